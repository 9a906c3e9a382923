#!/usr/bin/env python3
"""Fails when the library's modules import each other in a circle.

Every file under src/ (except main.rs, the binary) is one module. An arrow A -> B is drawn
when A names an item of B: `use crate::b::X`, `crate::b::f(...)` in code, `super::X`, or a
child module's path (`child::X`). A parent's `mod child;` line is not an arrow; a `pub use`
re-export is (the parent then depends on the child). Code inside `#[cfg(test)]` modules is
left out: unit tests may reach anywhere. Any strongly connected set of two or more modules
is printed with the names behind each arrow, and the exit code is 1.

    python3 .ci/module-cycles.py [SRC_DIR]      # default: src
    python3 .ci/module-cycles.py --self-test    # proves the check can fail
"""

import os
import re
import sys
import tempfile

IDENT = r"[A-Za-z_][A-Za-z0-9_]*"


def module_of(src, path):
    rel = os.path.relpath(path, src)[:-3].split(os.sep)
    if rel == ["lib"]:
        return ()
    if rel[-1] == "mod":
        rel = rel[:-1]
    return tuple(rel)


def strip_comments_and_strings(text):
    text = re.sub(r"/\*.*?\*/", "", text, flags=re.S)
    out = []
    for line in text.splitlines():
        line = re.sub(r'r#*"[^"]*"#*', '""', line)
        line = re.sub(r'"(\\.|[^"\\])*"', '""', line)
        line = re.sub(r"'(\\.|[^'\\])'", "''", line)
        line = line.split("//", 1)[0]
        out.append(line)
    return "\n".join(out)


def drop_test_modules(text):
    """Removes `#[cfg(test)] mod x { ... }` blocks (brace-counted)."""
    out = []
    i = 0
    pattern = re.compile(r"#\[cfg\(test\)\]\s*(pub(\([^)]*\))?\s+)?mod\s+" + IDENT + r"\s*\{")
    while True:
        m = pattern.search(text, i)
        if not m:
            out.append(text[i:])
            break
        out.append(text[i : m.start()])
        depth = 1
        j = m.end()
        while j < len(text) and depth:
            if text[j] == "{":
                depth += 1
            elif text[j] == "}":
                depth -= 1
            j += 1
        i = j
    return "".join(out)


def expand_use_tree(tree):
    """`a::{b, c::{d, e}}` -> [a::b, a::c::d, a::c::e]."""
    tree = re.sub(r"\s+", "", tree)
    depth = 0
    for k, ch in enumerate(tree):
        if ch == "{":
            if depth == 0:
                prefix, inner = tree[:k], tree[k + 1 : tree.rindex("}")]
                parts, cur, d = [], "", 0
                for c in inner:
                    if c == "," and d == 0:
                        parts.append(cur)
                        cur = ""
                        continue
                    d += c == "{"
                    d -= c == "}"
                    cur += c
                parts.append(cur)
                paths = []
                for p in filter(None, parts):
                    paths.extend(expand_use_tree(prefix + p))
                return paths
            depth += 1
    return [re.sub(r"\bas" + IDENT + "$", "", tree)]


def resolve(segments, current, modules):
    """Longest known module that `segments` (absolute, without `crate`) names."""
    best = None
    for n in range(len(segments), -1, -1):
        if tuple(segments[:n]) in modules:
            best = tuple(segments[:n])
            break
    return best, segments[len(best) :] if best is not None else []


def analyse(src):
    files = {}
    for root, _, names in os.walk(src):
        for name in names:
            path = os.path.join(root, name)
            if name.endswith(".rs") and os.path.relpath(path, src) != "main.rs":
                files[module_of(src, path)] = path
    modules = set(files)
    edges = {}
    for mod, path in files.items():
        with open(path, encoding="utf-8") as f:
            text = drop_test_modules(strip_comments_and_strings(f.read()))
        children = {m[-1] for m in modules if len(m) == len(mod) + 1 and m[: len(mod)] == mod}
        paths = []
        for m in re.finditer(r"\buse\s+([^;]+);", text):
            paths.extend(expand_use_tree(m.group(1)))
        body = re.sub(r"\buse\s+[^;]+;", "", text)
        paths.extend(re.findall(r"\b(?:crate|super|self)(?:::" + IDENT + r")+", body))
        if children:
            child_re = r"(?<![:\w])(?:" + "|".join(map(re.escape, children)) + r")(?:::" + IDENT + r")+"
            paths.extend(re.findall(child_re, body))
        for p in paths:
            segs = [s for s in p.split("::") if s and s != "*"]
            if not segs:
                continue
            if segs[0] == "crate":
                absolute = segs[1:]
            elif segs[0] in ("super", "self"):
                base = list(mod)
                while segs and segs[0] in ("super", "self"):
                    if segs[0] == "super":
                        base = base[:-1]
                    segs = segs[1:]
                absolute = base + segs
            elif segs[0] in children:
                absolute = list(mod) + segs
            else:
                continue
            target, names = resolve(absolute, mod, modules)
            if target is None or target == mod:
                continue
            # A path that only walks through a parent towards a child is not a use of it.
            if not names and len(target) < len(mod) and mod[: len(target)] == target:
                continue
            edges.setdefault(mod, {}).setdefault(target, set()).update(names[:1] or ["(module)"])
    return files, edges


def strongly_connected(nodes, edges):
    index, low, on_stack, stack, result = {}, {}, set(), [], []
    counter = [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in edges.get(v, {}):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                group.append(w)
                if w == v:
                    break
            if len(group) > 1:
                result.append(sorted(group))

    sys.setrecursionlimit(10000)
    for v in sorted(nodes):
        if v not in index:
            visit(v)
    return result


def name(mod):
    return "crate::" + "::".join(mod) if mod else "crate"


def check(src):
    files, edges = analyse(src)
    cycles = strongly_connected(files, edges)
    for n, group in enumerate(cycles, 1):
        print(f"cycle {n}: {', '.join(name(m) for m in group)}")
        for a in group:
            for b, names in sorted(edges.get(a, {}).items()):
                if b in group:
                    print(f"  {name(a)} -> {name(b)}: {', '.join(sorted(names))}")
    arrows = sum(len(t) for t in edges.values())
    print(f"{len(files)} modules, {arrows} arrows, {len(cycles)} cycle(s)")
    return 1 if cycles else 0


def self_test():
    with tempfile.TemporaryDirectory() as tmp:
        src = os.path.join(tmp, "src")
        os.makedirs(os.path.join(src, "a"))
        with open(os.path.join(src, "lib.rs"), "w") as f:
            f.write("pub mod a;\npub mod b;\n")
        with open(os.path.join(src, "a", "mod.rs"), "w") as f:
            f.write("mod inner;\nuse crate::b::{Thing, other::X};\n#[cfg(test)]\nmod tests { use crate::b::T; }\n")
        with open(os.path.join(src, "a", "inner.rs"), "w") as f:
            f.write("pub fn f() { super::g() }\n")
        with open(os.path.join(src, "b.rs"), "w") as f:
            f.write("// use crate::a::Nothing;\npub fn h() { let _ = \"crate::a::Y\"; }\n")
        assert check(src) == 0, "no cycle expected"
        with open(os.path.join(src, "b.rs"), "a") as f:
            f.write("pub fn k() { crate::a::inner::f() }\n")
        assert check(src) == 1, "the cycle a -> b -> a::inner -> a was not found"
    print("self-test passed: the check finds a planted cycle and passes a clean tree")
    return 0


if __name__ == "__main__":
    if sys.argv[1:] == ["--self-test"]:
        sys.exit(self_test())
    sys.exit(check(sys.argv[1] if len(sys.argv) > 1 else "src"))
