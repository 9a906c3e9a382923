//! Revocations as the fleet stores and sends them: one JSON record each, the member of a
//! Redis sorted set whose score is the Unix second until which it holds, and the message
//! published when it is accepted. The local set ([`Revocations`]) is what enforces them;
//! this module only converts between the two.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::token::revocation::{Holder, Revocations, RevocationsFull, RuleKey, RuleTerms, Snapshot};

/// One fleet revocation, or (`Resync`) a request to reload the durable set.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Record {
    /// A token, by the hex SHA-256 of its text.
    Token { sha256: String, until: u64 },
    /// Every token of `sub` (of issuer `iss`, or of any) issued at or before `issued_before`.
    Subject {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        iss: Option<String>,
        sub: String,
        issued_before: u64,
        until: u64,
    },
    /// Every token of `client_id` (of issuer `iss`, or of any) issued at or before `issued_before`.
    Client {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        iss: Option<String>,
        client_id: String,
        issued_before: u64,
        until: u64,
    },
    /// Sent after records were written back to the durable set without their own message
    /// (a sidecar that accepted revocations while Redis was unreachable).
    Resync,
}

impl Record {
    /// The record of a token revocation.
    pub fn token(digest: &[u8; 32], until: Duration) -> Record {
        Record::Token {
            sha256: digest.iter().map(|b| format!("{b:02x}")).collect(),
            until: until.as_secs(),
        }
    }

    /// The record of a holder rule.
    pub fn holder(key: &RuleKey, terms: RuleTerms) -> Record {
        let (iss, issued_before, until) = (key.issuer.clone(), terms.issued_before, terms.until.as_secs());
        match &key.holder {
            Holder::Subject(sub) => Record::Subject {
                iss,
                sub: sub.clone(),
                issued_before,
                until,
            },
            Holder::Client(client_id) => Record::Client {
                iss,
                client_id: client_id.clone(),
                issued_before,
                until,
            },
        }
    }

    /// Every live entry of a local snapshot.
    pub fn all_of(snapshot: &Snapshot) -> Vec<Record> {
        let tokens = snapshot
            .tokens
            .iter()
            .map(|(digest, until)| Record::token(digest, *until));
        let rules = snapshot.rules.iter().map(|(key, terms)| Record::holder(key, *terms));
        tokens.chain(rules).collect()
    }

    /// Until when the record holds (Unix seconds); `None` for `Resync`.
    pub fn until(&self) -> Option<u64> {
        match self {
            Record::Token { until, .. } | Record::Subject { until, .. } | Record::Client { until, .. } => Some(*until),
            Record::Resync => None,
        }
    }

    /// The record as stored and sent.
    pub fn encode(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }

    /// Reads a stored or sent record; anything else is `None`.
    pub fn decode(text: &[u8]) -> Option<Record> {
        serde_json::from_slice(text).ok()
    }

    /// Applies the record to the local set at `now`. A lapsed record changes nothing.
    ///
    /// # Errors
    /// [`RevocationsFull`]: the local set has no room.
    pub fn apply(&self, revocations: &Revocations, now: Duration) -> Result<(), RevocationsFull> {
        let Some(until) = self.until().map(Duration::from_secs).filter(|until| *until > now) else {
            return Ok(());
        };
        let rule = |iss: &Option<String>, holder: Holder, issued_before: u64| {
            let key = RuleKey {
                issuer: iss.clone(),
                holder,
            };
            revocations
                .revoke_holder(key, RuleTerms { issued_before, until }, now)
                .map(drop)
        };
        match self {
            Record::Token { sha256, .. } => match parse_hex_digest(sha256) {
                Some(digest) => revocations.revoke(&digest, Some(until), now).map(drop),
                None => Ok(()),
            },
            Record::Subject {
                iss,
                sub,
                issued_before,
                ..
            } => rule(iss, Holder::Subject(sub.clone()), *issued_before),
            Record::Client {
                iss,
                client_id,
                issued_before,
                ..
            } => rule(iss, Holder::Client(client_id.clone()), *issued_before),
            Record::Resync => Ok(()),
        }
    }
}

/// 64 hex digits → 32 bytes.
pub fn parse_hex_digest(hex: &str) -> Option<[u8; 32]> {
    if hex.len() != 64 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(hex.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip_and_apply() {
        let revocations = Revocations::default();
        let now = Duration::from_secs(1_000);
        let token = Record::token(&[7; 32], now + Duration::from_secs(60));
        let subject = Record::Subject {
            iss: None,
            sub: "alice".into(),
            issued_before: 999,
            until: 2_000,
        };
        for record in [&token, &subject] {
            assert_eq!(Record::decode(record.encode().as_bytes()).as_ref(), Some(record));
            record.apply(&revocations, now).expect("room");
        }
        assert!(revocations.is_revoked(&[7; 32], now));
        let snapshot = revocations.snapshot(now);
        let mut written = Record::all_of(&snapshot);
        written.sort_by_key(Record::encode);
        let mut expected = vec![token, subject];
        expected.sort_by_key(Record::encode);
        assert_eq!(written, expected);
        assert_eq!(Record::decode(b"{\"kind\":\"resync\"}"), Some(Record::Resync));
        assert_eq!(Record::decode(b"{\"kind\":\"other\"}"), None);
        // A lapsed record is not applied.
        let lapsed = Record::token(&[8; 32], now);
        lapsed.apply(&revocations, now).expect("nothing to add");
        assert!(!revocations.is_revoked(&[8; 32], now));
    }
}
