//! Checks on the shape of `guest/src` that must not regress: the modules import each
//! other without cycles, and no function outside tests is longer than 60 lines.
//!
//! The sources are read as text: comments, strings and character literals are blanked
//! first, and items under `#[cfg(test)]` (inline test modules, test helpers, and modules
//! declared `#[cfg(test)] mod x;`) are left out.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The longest a function may be, signature to closing brace.
const MAX_FN_LINES: usize = 60;

/// One source file without comments, literals and test-only items.
struct Source {
    /// Relative to `src`, e.g. `plan/admission.rs`.
    path: String,
    code: String,
}

impl Source {
    /// The top-level module the file belongs to (`plan` for `plan/admission.rs`), or
    /// `None` for the crate root.
    fn module(&self) -> Option<String> {
        let first = self.path.split('/').next().unwrap_or(&self.path);
        let name = first.trim_end_matches(".rs");
        (name != "lib").then(|| name.to_string())
    }
}

fn src_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("src is readable") {
        let path = entry.expect("a directory entry").path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// Every non-test source file of the guest.
fn sources() -> Vec<Source> {
    let src = src_dir();
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let parsed: Vec<(String, String)> = files
        .iter()
        .map(|f| {
            let path = f.strip_prefix(&src).unwrap().to_string_lossy().replace('\\', "/");
            (path, blank_literals(&std::fs::read_to_string(f).unwrap()))
        })
        .collect();
    let mut test_only = BTreeSet::new();
    let mut sources = Vec::new();
    for (path, code) in &parsed {
        // Where the modules this file declares live: `task.rs` -> `task/`, `lib.rs` -> ``.
        let stem = path.trim_end_matches(".rs");
        let dir = match stem.rsplit_once('/') {
            _ if stem == "lib" => String::new(),
            Some((parent, "mod")) => format!("{parent}/"),
            _ => format!("{stem}/"),
        };
        let (code, test_mods) = strip_test_items(code);
        test_only.extend(test_mods.into_iter().map(|m| format!("{dir}{m}")));
        sources.push(Source { path: path.clone(), code });
    }
    sources.retain(|s| {
        let stem = s.path.trim_end_matches(".rs");
        !test_only.iter().any(|t| stem == t || stem.starts_with(&format!("{t}/")))
    });
    sources
}

/// `text` with comments, string and character literals replaced by spaces (newlines
/// kept, so line numbers stay right).
fn blank_literals(text: &str) -> String {
    let chars: Vec<char> = text.chars().collect();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    let blank = |out: &mut String, slice: &[char]| out.extend(slice.iter().map(|&c| if c == '\n' { '\n' } else { ' ' }));
    let ident = |c: char| c.is_alphanumeric() || c == '_';
    while i < chars.len() {
        let c = chars[i];
        let next = chars.get(i + 1).copied();
        let end = if c == '/' && next == Some('/') {
            chars[i..].iter().position(|&c| c == '\n').map_or(chars.len(), |n| i + n)
        } else if c == '/' && next == Some('*') {
            find(&chars, i + 2, &['*', '/']).map_or(chars.len(), |n| n + 2)
        } else if c == 'r' && (i == 0 || !ident(chars[i - 1])) && matches!(next, Some('"' | '#')) {
            let hashes = chars[i + 1..].iter().take_while(|&&c| c == '#').count();
            if chars.get(i + 1 + hashes) != Some(&'"') {
                out.push(c);
                i += 1;
                continue;
            }
            let closing: Vec<char> = std::iter::once('"').chain(std::iter::repeat_n('#', hashes)).collect();
            find(&chars, i + 2 + hashes, &closing).map_or(chars.len(), |n| n + closing.len())
        } else if c == '"' {
            let mut j = i + 1;
            while j < chars.len() && chars[j] != '"' {
                j += if chars[j] == '\\' { 2 } else { 1 };
            }
            j + 1
        } else if c == '\'' && next == Some('\\') {
            find(&chars, i + 3, &['\'']).map_or(chars.len(), |n| n + 1)
        } else if c == '\'' && chars.get(i + 2) == Some(&'\'') {
            i + 3
        } else {
            out.push(c);
            i += 1;
            continue;
        };
        let end = end.min(chars.len());
        blank(&mut out, &chars[i..end]);
        i = end;
    }
    out
}

/// The index of the first occurrence of `needle` in `chars` at or after `from`.
fn find(chars: &[char], from: usize, needle: &[char]) -> Option<usize> {
    (from..chars.len().saturating_sub(needle.len() - 1)).find(|&i| chars[i..i + needle.len()] == *needle)
}

/// The index just past the brace matching the `{` at `open`.
fn matching_brace(code: &[char], open: usize) -> usize {
    let mut depth = 0;
    for (i, &c) in code.iter().enumerate().skip(open) {
        match c {
            '{' => depth += 1,
            '}' => {
                depth -= 1;
                if depth == 0 {
                    return i + 1;
                }
            }
            _ => {}
        }
    }
    code.len()
}

/// `code` with every `#[cfg(test)]` item blanked, and the names of the modules it
/// declares test-only (`#[cfg(test)] mod testing;`).
fn strip_test_items(code: &str) -> (String, Vec<String>) {
    let mut chars: Vec<char> = code.chars().collect();
    let marker: Vec<char> = "#[cfg(test)]".chars().collect();
    let mut test_mods = Vec::new();
    let mut from = 0;
    while let Some(at) = find(&chars, from, &marker) {
        let item_end = (at..chars.len()).find(|&i| chars[i] == '{' || chars[i] == ';').unwrap_or(chars.len());
        let end = if chars.get(item_end) == Some(&'{') { matching_brace(&chars, item_end) } else { item_end + 1 };
        let header: String = chars[at + marker.len()..item_end].iter().collect();
        let words: Vec<&str> = header.split_whitespace().collect();
        let declared_mod = words.iter().position(|w| *w == "mod").filter(|_| chars.get(item_end) == Some(&';'));
        if let Some(pos) = declared_mod {
            test_mods.push(words[pos + 1].to_string());
        }
        for c in &mut chars[at..end.min(code.chars().count())] {
            if *c != '\n' {
                *c = ' ';
            }
        }
        from = end;
    }
    (chars.into_iter().collect(), test_mods)
}

/// The top-level modules `code` names through `crate::` paths (`crate::x::...`,
/// `use crate::{x, y::z}`).
fn crate_references(code: &str) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    let mut rest = code;
    while let Some(at) = rest.find("crate::") {
        let after = &rest[at + "crate::".len()..];
        let preceded_by_ident = rest[..at].chars().next_back().is_some_and(|c| c.is_alphanumeric() || c == '_');
        if !preceded_by_ident {
            if let Some(group) = after.strip_prefix('{') {
                let inner = &group[..group.find('}').unwrap_or(group.len())];
                found.extend(inner.split(',').filter_map(|part| first_ident(part.trim())));
            } else if let Some(name) = first_ident(after) {
                found.insert(name);
            }
        }
        rest = after;
    }
    found
}

fn first_ident(text: &str) -> Option<String> {
    let name: String = text.chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect();
    (!name.is_empty() && name != "self").then_some(name)
}

/// The module graph: each module and the modules it references.
fn module_graph(sources: &[Source]) -> BTreeMap<String, BTreeSet<String>> {
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for source in sources {
        let Some(module) = source.module() else { continue };
        let refs: Vec<String> = crate_references(&source.code).into_iter().filter(|r| *r != module).collect();
        graph.entry(module).or_default().extend(refs);
    }
    graph
}

/// A cycle in `graph`, as a path that ends where it starts, if there is one.
fn find_cycle(graph: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    fn visit(
        node: &str,
        graph: &BTreeMap<String, BTreeSet<String>>,
        path: &mut Vec<String>,
        finished: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(start) = path.iter().position(|n| n == node) {
            let mut cycle = path[start..].to_vec();
            cycle.push(node.to_string());
            return Some(cycle);
        }
        if finished.contains(node) {
            return None;
        }
        path.push(node.to_string());
        for next in graph.get(node).into_iter().flatten() {
            if let Some(cycle) = visit(next, graph, path, finished) {
                return Some(cycle);
            }
        }
        path.pop();
        finished.insert(node.to_string());
        None
    }
    let mut finished = BTreeSet::new();
    graph.keys().find_map(|node| visit(node, graph, &mut Vec::new(), &mut finished))
}

/// Functions longer than [`MAX_FN_LINES`]: `path:line name (n lines)`.
fn long_functions(source: &Source) -> Vec<String> {
    let chars: Vec<char> = source.code.chars().collect();
    let line_of = |index: usize| chars[..index].iter().filter(|&&c| c == '\n').count() + 1;
    let mut found = Vec::new();
    let keyword: Vec<char> = "fn ".chars().collect();
    let mut from = 0;
    while let Some(at) = find(&chars, from, &keyword) {
        from = at + keyword.len();
        let standalone = at == 0 || !(chars[at - 1].is_alphanumeric() || chars[at - 1] == '_');
        let name: String = chars[from..].iter().take_while(|c| c.is_alphanumeric() || **c == '_').collect();
        if !standalone || name.is_empty() {
            continue;
        }
        let Some(open) = (from..chars.len()).find(|&i| chars[i] == '{' || chars[i] == ';') else { break };
        if chars[open] == ';' {
            continue; // a declaration without a body
        }
        let lines = line_of(matching_brace(&chars, open) - 1) - line_of(at) + 1;
        if lines > MAX_FN_LINES {
            found.push(format!("{}:{} {name} ({lines} lines)", source.path, line_of(at)));
        }
    }
    found
}

#[test]
fn guest_modules_import_each_other_without_cycles() {
    let graph = module_graph(&sources());
    assert!(graph.contains_key("provision") && graph["provision"].contains("plan"), "the scan sees the imports: {graph:?}");
    if let Some(cycle) = find_cycle(&graph) {
        panic!("guest modules import each other in a circle: {}", cycle.join(" -> "));
    }
}

#[test]
fn no_guest_function_is_longer_than_60_lines() {
    let sources = sources();
    assert!(sources.iter().all(|s| s.path != "testing.rs" && s.path != "task/tests.rs"), "test-only modules are left out");
    let long: Vec<String> = sources.iter().flat_map(long_functions).collect();
    assert!(long.is_empty(), "functions over {MAX_FN_LINES} lines (split them by job):\n{}", long.join("\n"));
}

#[test]
fn the_checks_see_cycles_long_functions_and_test_code() {
    let cyclic = [("a.rs", "use crate::b::X;"), ("b.rs", "use crate::{c, d::Y};"), ("c.rs", "fn f() { crate::a::g() }")];
    let sources: Vec<Source> = cyclic.iter().map(|(p, c)| Source { path: p.to_string(), code: c.to_string() }).collect();
    assert_eq!(find_cycle(&module_graph(&sources)), Some(vec!["a".into(), "b".into(), "c".into(), "a".into()]));
    let body = "    let x = \"}\"; // }\n".repeat(MAX_FN_LINES);
    let long = Source { path: "long.rs".into(), code: blank_literals(&format!("fn long() {{\n{body}}}\nfn short() {{}}\n")) };
    assert_eq!(long_functions(&long), [format!("long.rs:1 long ({} lines)", MAX_FN_LINES + 2)]);
    let (code, mods) = strip_test_items("fn a() {}\n#[cfg(test)]\nmod tests {\n fn b() { crate::x::y() }\n}\n#[cfg(test)]\nmod testing;\n");
    assert_eq!((crate_references(&code), mods), (BTreeSet::new(), vec!["testing".to_string()]));
    assert_eq!(blank_literals("'{' r#\"}\"# '\\'' 'a"), "                'a");
}
