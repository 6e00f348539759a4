//! No function in `host-runner/src` is longer than [`MAX_LINES`] lines, tests aside
//! (`#[cfg(test)]` items and `tests.rs` files). Long functions do several jobs; split them.

use std::path::{Path, PathBuf};
use syn::spanned::Spanned as _;
use syn::visit::Visit;

/// The longest a function may be, from `fn` to its closing brace.
const MAX_LINES: usize = 60;

/// Collects the functions of one file that are too long.
struct Finder<'a> {
    file: &'a Path,
    long: Vec<String>,
}

fn is_test_only(attrs: &[syn::Attribute]) -> bool {
    attrs.iter().any(|a| a.path().is_ident("cfg") && a.meta.require_list().is_ok_and(|l| l.tokens.to_string() == "test"))
}

impl Finder<'_> {
    fn check(&mut self, name: &syn::Ident, sig: &syn::Signature, block: &syn::Block) {
        let lines = block.span().end().line - sig.fn_token.span.start().line + 1;
        if lines > MAX_LINES {
            self.long.push(format!("{}:{} fn {name}: {lines} lines", self.file.display(), sig.fn_token.span.start().line));
        }
    }
}

impl<'ast> Visit<'ast> for Finder<'_> {
    fn visit_item_mod(&mut self, m: &'ast syn::ItemMod) {
        if !is_test_only(&m.attrs) {
            syn::visit::visit_item_mod(self, m);
        }
    }
    fn visit_item_impl(&mut self, i: &'ast syn::ItemImpl) {
        if !is_test_only(&i.attrs) {
            syn::visit::visit_item_impl(self, i);
        }
    }
    fn visit_item_fn(&mut self, f: &'ast syn::ItemFn) {
        if !is_test_only(&f.attrs) {
            self.check(&f.sig.ident, &f.sig, &f.block);
            syn::visit::visit_item_fn(self, f);
        }
    }
    fn visit_impl_item_fn(&mut self, f: &'ast syn::ImplItemFn) {
        if !is_test_only(&f.attrs) {
            self.check(&f.sig.ident, &f.sig, &f.block);
            syn::visit::visit_impl_item_fn(self, f);
        }
    }
    fn visit_trait_item_fn(&mut self, f: &'ast syn::TraitItemFn) {
        if let Some(block) = f.default.as_ref().filter(|_| !is_test_only(&f.attrs)) {
            self.check(&f.sig.ident, &f.sig, block);
            syn::visit::visit_trait_item_fn(self, f);
        }
    }
}

/// Every `.rs` file under `dir` except `tests.rs` files.
fn sources(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let path = entry.unwrap().path();
        if path.is_dir() {
            sources(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") && path.file_name().is_some_and(|n| n != "tests.rs") {
            out.push(path);
        }
    }
}

#[test]
fn no_function_is_longer_than_sixty_lines() {
    let mut files = Vec::new();
    sources(&Path::new(env!("CARGO_MANIFEST_DIR")).join("src"), &mut files);
    assert!(files.len() > 10, "found only {files:?}");
    let mut long = Vec::new();
    for file in &files {
        let text = std::fs::read_to_string(file).unwrap();
        let parsed = syn::parse_file(&text).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        let mut finder = Finder { file: file.strip_prefix(env!("CARGO_MANIFEST_DIR")).unwrap(), long: Vec::new() };
        finder.visit_file(&parsed);
        long.extend(finder.long);
    }
    assert!(long.is_empty(), "functions over {MAX_LINES} lines (split them):\n{}", long.join("\n"));
}

#[test]
fn a_long_function_is_found_and_test_code_is_not() {
    let body = "let x = 1;\n".repeat(MAX_LINES);
    let text = format!("fn long() {{\n{body}}}\nfn short() {{}}\n#[cfg(test)]\nmod tests {{ fn long_test() {{\n{body}}} }}\n");
    let mut finder = Finder { file: Path::new("x.rs"), long: Vec::new() };
    finder.visit_file(&syn::parse_file(&text).unwrap());
    assert_eq!(finder.long, [format!("x.rs:1 fn long: {} lines", MAX_LINES + 2)]);
}
