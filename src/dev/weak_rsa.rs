//! A deliberately small, test-only RSA implementation for key sizes that
//! aws-lc refuses (it neither generates nor signs with keys under 2048 bits).
//!
//! Hostile-token tests need tokens that are *validly* signed by a weak
//! (e.g. 1024-bit) key, so a validator's "key too small" rule is exercised
//! rather than a generic signature failure. This code is **not** constant
//! time and must never protect anything: it only exists to produce such
//! test keys and signatures.

use aws_lc_rs::{digest, rand};

use super::DevError;

/// Little-endian 32-bit limbs.
type Limbs = Vec<u32>;

/// DER `DigestInfo` prefix for SHA-256 (RFC 8017 §9.2, note 1).
const SHA256_DIGEST_INFO: [u8; 19] = [
    0x30, 0x31, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x01, 0x05, 0x00, 0x04, 0x20,
];

const PUBLIC_EXPONENT: u32 = 65_537;

/// A small RSA private key (n, e, d) in big-endian bytes.
#[derive(Clone)]
pub(crate) struct WeakRsaKey {
    n: Limbs,
    d: Limbs,
    modulus_len: usize,
}

impl WeakRsaKey {
    /// Generate a key whose modulus has exactly `bits` bits (`bits` even, 512..2048).
    pub(crate) fn generate(bits: usize) -> Result<Self, DevError> {
        if !(512..2048).contains(&bits) || !bits.is_multiple_of(64) {
            return Err(DevError::Unsupported(format!(
                "built-in RSA supports 512..2047-bit keys in steps of 64, not {bits}"
            )));
        }
        let half = bits / 2;
        loop {
            let p = random_prime(half)?;
            let q = random_prime(half)?;
            if cmp(&p, &q) == std::cmp::Ordering::Equal {
                continue;
            }
            let n = trim(mul(&p, &q));
            if bit_len(&n) != bits {
                continue;
            }
            let phi = trim(mul(&sub_small(&p, 1), &sub_small(&q, 1)));
            let e = u64::from(PUBLIC_EXPONENT);
            let r = u64::from(mod_small(&phi, PUBLIC_EXPONENT));
            if r == 0 {
                continue;
            }
            // d = (1 + k*phi) / e where k = -phi^-1 mod e (e is prime).
            let r_inv = pow_mod_u64(r, e - 2, e);
            let k = (e - r_inv) % e;
            let kphi = mul_small(&phi, u32::try_from(k).map_err(|_| crypto("k"))?);
            let (d, rem) = div_small(&add_small(&kphi, 1), PUBLIC_EXPONENT);
            if rem != 0 {
                return Err(crypto("RSA private exponent derivation"));
            }
            return Ok(Self {
                modulus_len: bits / 8,
                n,
                d: trim(d),
            });
        }
    }

    /// Big-endian modulus.
    pub(crate) fn modulus(&self) -> Vec<u8> {
        to_be_bytes(&self.n, self.modulus_len)
    }

    /// Big-endian public exponent.
    pub(crate) fn exponent(&self) -> Vec<u8> {
        PUBLIC_EXPONENT
            .to_be_bytes()
            .into_iter()
            .skip_while(|b| *b == 0)
            .collect()
    }

    /// RSASSA-PKCS1-v1_5 with SHA-256 (RFC 8017 §8.2.1).
    pub(crate) fn sign_pkcs1_sha256(&self, msg: &[u8]) -> Vec<u8> {
        let hash = digest::digest(&digest::SHA256, msg);
        let k = self.modulus_len;
        let t_len = SHA256_DIGEST_INFO.len() + hash.as_ref().len();
        let mut em = vec![0xffu8; k];
        em[0] = 0x00;
        em[1] = 0x01;
        em[k - t_len - 1] = 0x00;
        em[k - t_len..k - hash.as_ref().len()].copy_from_slice(&SHA256_DIGEST_INFO);
        em[k - hash.as_ref().len()..].copy_from_slice(hash.as_ref());
        let m = from_be_bytes(&em);
        let s = Mont::new(&self.n).pow(&m, &self.d);
        to_be_bytes(&s, k)
    }
}

fn crypto(what: &str) -> DevError {
    DevError::Crypto(format!("built-in RSA: {what}"))
}

fn random_prime(bits: usize) -> Result<Limbs, DevError> {
    let small = small_primes();
    let mut buf = vec![0u8; bits / 8];
    'candidate: loop {
        rand::fill(&mut buf).map_err(|_| crypto("random"))?;
        buf[0] |= 0xc0; // top two bits: the product has exactly 2*bits bits
        let last = buf.len() - 1;
        buf[last] |= 1;
        let c = from_be_bytes(&buf);
        for &sp in &small {
            if mod_small(&c, sp) == 0 {
                continue 'candidate;
            }
        }
        if mod_small(&c, PUBLIC_EXPONENT) == 1 {
            continue; // e must be invertible modulo c - 1
        }
        if miller_rabin(&c, bits, 24)? {
            return Ok(c);
        }
    }
}

fn small_primes() -> Vec<u32> {
    let limit = 2000usize;
    let mut sieve = vec![true; limit];
    let mut out = Vec::new();
    for i in 2..limit {
        if sieve[i] {
            out.push(u32::try_from(i).unwrap_or(2));
            let mut j = i * i;
            while j < limit {
                sieve[j] = false;
                j += i;
            }
        }
    }
    out
}

fn miller_rabin(n: &Limbs, bits: usize, rounds: usize) -> Result<bool, DevError> {
    let n_minus_1 = sub_small(n, 1);
    let mut d = n_minus_1.clone();
    let mut s = 0;
    while d[0] & 1 == 0 {
        d = shr1(&d);
        s += 1;
    }
    let mont = Mont::new(n);
    let one = vec![1u32];
    let mut buf = vec![0u8; bits / 8];
    for _ in 0..rounds {
        rand::fill(&mut buf).map_err(|_| crypto("random"))?;
        buf[0] &= 0x3f; // below n, whose top two bits are set
        let mut a = from_be_bytes(&buf);
        if cmp(&a, &vec![2]) == std::cmp::Ordering::Less {
            a = vec![2];
        }
        let mut x = mont.pow(&a, &d);
        if eq(&x, &one) || eq(&x, &n_minus_1) {
            continue;
        }
        let mut witness = true;
        for _ in 1..s {
            x = mont.mul_plain(&x, &x);
            if eq(&x, &n_minus_1) {
                witness = false;
                break;
            }
        }
        if witness {
            return Ok(false);
        }
    }
    Ok(true)
}

/// Montgomery arithmetic modulo an odd `n`.
struct Mont {
    n: Limbs,
    n0_inv: u32,
    r2: Limbs,
}

impl Mont {
    fn new(n: &Limbs) -> Self {
        let n = trim(n.clone());
        let mut inv: u32 = 1;
        for _ in 0..5 {
            inv = inv.wrapping_mul(2u32.wrapping_sub(n[0].wrapping_mul(inv)));
        }
        // R^2 mod n by doubling 1, 2*32*k times.
        let k = n.len();
        let mut r2 = vec![0u32; k];
        r2[0] = 1;
        for _ in 0..(64 * k) {
            let carry = shl1_in_place(&mut r2);
            if carry || cmp(&r2, &n) != std::cmp::Ordering::Less {
                sub_in_place(&mut r2, &n);
            }
        }
        Self {
            n,
            n0_inv: inv.wrapping_neg(),
            r2,
        }
    }

    /// CIOS Montgomery product a*b*R^-1 mod n; inputs below n, padded to k limbs.
    fn mont_mul(&self, a: &[u32], b: &[u32]) -> Limbs {
        let k = self.n.len();
        let mut t = vec![0u32; k + 2];
        for i in 0..k {
            let bi = u64::from(limb(b, i));
            let mut carry = 0u64;
            for (j, tj) in t.iter_mut().enumerate().take(k) {
                let v = u64::from(*tj) + u64::from(limb(a, j)) * bi + carry;
                *tj = v as u32;
                carry = v >> 32;
            }
            let v = u64::from(t[k]) + carry;
            t[k] = v as u32;
            t[k + 1] = (v >> 32) as u32;
            let m = u64::from(t[0].wrapping_mul(self.n0_inv));
            let v = u64::from(t[0]) + m * u64::from(self.n[0]);
            let mut carry = v >> 32;
            for j in 1..k {
                let v = u64::from(t[j]) + m * u64::from(self.n[j]) + carry;
                t[j - 1] = v as u32;
                carry = v >> 32;
            }
            let v = u64::from(t[k]) + carry;
            t[k - 1] = v as u32;
            t[k] = t[k + 1] + (v >> 32) as u32;
            t[k + 1] = 0;
        }
        t.truncate(k + 1);
        if t[k] != 0 || cmp(&t[..k].to_vec(), &self.n) != std::cmp::Ordering::Less {
            sub_in_place(&mut t, &self.n);
        }
        t.truncate(k);
        t
    }

    /// Plain modular product a*b mod n.
    fn mul_plain(&self, a: &Limbs, b: &Limbs) -> Limbs {
        trim(self.mont_mul(&self.mont_mul(a, b), &self.r2))
    }

    /// base^exp mod n, with base < n.
    fn pow(&self, base: &Limbs, exp: &Limbs) -> Limbs {
        let base_m = self.mont_mul(base, &self.r2);
        let mut acc = self.mont_mul(&[1], &self.r2);
        for bit in (0..bit_len(exp)).rev() {
            acc = self.mont_mul(&acc, &acc);
            if (exp[bit / 32] >> (bit % 32)) & 1 == 1 {
                acc = self.mont_mul(&acc, &base_m);
            }
        }
        trim(self.mont_mul(&acc, &[1]))
    }
}

fn limb(a: &[u32], i: usize) -> u32 {
    a.get(i).copied().unwrap_or(0)
}

fn trim(mut a: Limbs) -> Limbs {
    while a.len() > 1 && a[a.len() - 1] == 0 {
        a.pop();
    }
    if a.is_empty() {
        a.push(0);
    }
    a
}

fn bit_len(a: &[u32]) -> usize {
    for i in (0..a.len()).rev() {
        if a[i] != 0 {
            return i * 32 + (32 - a[i].leading_zeros() as usize);
        }
    }
    0
}

fn cmp(a: &Limbs, b: &Limbs) -> std::cmp::Ordering {
    let len = a.len().max(b.len());
    for i in (0..len).rev() {
        match limb(a, i).cmp(&limb(b, i)) {
            std::cmp::Ordering::Equal => {}
            other => return other,
        }
    }
    std::cmp::Ordering::Equal
}

fn eq(a: &Limbs, b: &Limbs) -> bool {
    cmp(a, b) == std::cmp::Ordering::Equal
}

/// a -= b (wrapping past a's length is ignored: callers ensure a >= b, or a
/// carries an extra top limb).
fn sub_in_place(a: &mut [u32], b: &[u32]) {
    let mut borrow = 0i64;
    for (i, ai) in a.iter_mut().enumerate() {
        let v = i64::from(*ai) - i64::from(limb(b, i)) - borrow;
        if v < 0 {
            *ai = (v + (1i64 << 32)) as u32;
            borrow = 1;
        } else {
            *ai = v as u32;
            borrow = 0;
        }
    }
}

fn shl1_in_place(a: &mut [u32]) -> bool {
    let mut carry = 0u32;
    for ai in a.iter_mut() {
        let next = *ai >> 31;
        *ai = (*ai << 1) | carry;
        carry = next;
    }
    carry == 1
}

fn shr1(a: &Limbs) -> Limbs {
    let mut out = a.clone();
    for (i, o) in out.iter_mut().enumerate() {
        *o = (*o >> 1) | (limb(a, i + 1) << 31);
    }
    trim(out)
}

fn mul(a: &Limbs, b: &Limbs) -> Limbs {
    let mut out = vec![0u32; a.len() + b.len()];
    for (i, &ai) in a.iter().enumerate() {
        let mut carry = 0u64;
        for (j, &bj) in b.iter().enumerate() {
            let v = u64::from(out[i + j]) + u64::from(ai) * u64::from(bj) + carry;
            out[i + j] = v as u32;
            carry = v >> 32;
        }
        out[i + b.len()] = carry as u32;
    }
    out
}

fn mul_small(a: &Limbs, m: u32) -> Limbs {
    let mut out = Vec::with_capacity(a.len() + 1);
    let mut carry = 0u64;
    for &ai in a {
        let v = u64::from(ai) * u64::from(m) + carry;
        out.push(v as u32);
        carry = v >> 32;
    }
    out.push(carry as u32);
    trim(out)
}

fn add_small(a: &Limbs, s: u32) -> Limbs {
    let mut out = a.clone();
    out.push(0);
    let mut carry = u64::from(s);
    for o in out.iter_mut() {
        let v = u64::from(*o) + carry;
        *o = v as u32;
        carry = v >> 32;
        if carry == 0 {
            break;
        }
    }
    trim(out)
}

fn sub_small(a: &Limbs, s: u32) -> Limbs {
    let mut out = a.clone();
    sub_in_place(&mut out, &[s]);
    trim(out)
}

fn div_small(a: &Limbs, d: u32) -> (Limbs, u32) {
    let mut out = vec![0u32; a.len()];
    let mut rem = 0u64;
    for i in (0..a.len()).rev() {
        let cur = (rem << 32) | u64::from(a[i]);
        out[i] = (cur / u64::from(d)) as u32;
        rem = cur % u64::from(d);
    }
    (trim(out), rem as u32)
}

fn mod_small(a: &Limbs, d: u32) -> u32 {
    div_small(a, d).1
}

fn pow_mod_u64(mut base: u64, mut exp: u64, m: u64) -> u64 {
    let mut acc = 1u64;
    base %= m;
    while exp > 0 {
        if exp & 1 == 1 {
            acc = acc * base % m;
        }
        base = base * base % m;
        exp >>= 1;
    }
    acc
}

fn from_be_bytes(bytes: &[u8]) -> Limbs {
    let mut out = Vec::with_capacity(bytes.len() / 4 + 1);
    for chunk in bytes.rchunks(4) {
        let mut word = 0u32;
        for &b in chunk {
            word = (word << 8) | u32::from(b);
        }
        out.push(word);
    }
    trim(out)
}

fn to_be_bytes(a: &Limbs, len: usize) -> Vec<u8> {
    let mut out = vec![0u8; len];
    for (i, &w) in a.iter().enumerate() {
        for (j, b) in w.to_le_bytes().into_iter().enumerate() {
            let pos = i * 4 + j;
            if pos < len {
                out[len - 1 - pos] = b;
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn montgomery_matches_small_numbers() {
        let n = vec![1_000_003u32];
        let m = Mont::new(&n);
        assert_eq!(m.pow(&vec![2], &vec![20]), vec![(1u64 << 20) as u32 % 1_000_003]);
        assert_eq!(m.mul_plain(&vec![999_999], &vec![999_999]), vec![16]);
    }

    #[test]
    fn weak_1024_signature_verifies_with_aws_lc_legacy_params() {
        let key = WeakRsaKey::generate(1024).expect("keygen");
        assert_eq!(key.modulus().len(), 128);
        let msg = b"header.payload";
        let sig = key.sign_pkcs1_sha256(msg);
        let public = aws_lc_rs::signature::RsaPublicKeyComponents {
            n: key.modulus(),
            e: key.exponent(),
        };
        public
            .verify(
                &aws_lc_rs::signature::RSA_PKCS1_1024_8192_SHA256_FOR_LEGACY_USE_ONLY,
                msg,
                &sig,
            )
            .expect("valid signature");
        assert!(
            public
                .verify(
                    &aws_lc_rs::signature::RSA_PKCS1_1024_8192_SHA256_FOR_LEGACY_USE_ONLY,
                    b"other",
                    &sig,
                )
                .is_err()
        );
    }
}
