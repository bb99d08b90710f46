//! The crate's layers (docs/architecture.md, "Layers"): each top-level module of `src/` names
//! only modules of its own layer that come before it, and modules of the layers below. Read from
//! the source as text (`crate::…` paths outside comments and `#[cfg(test)]` modules), so a new
//! import that would tie the layers into a circle fails here, with the file that made it.

use std::{collections::BTreeMap, fs, path::Path};

/// The layers, lowest first; within a layer, a module may use the ones listed before it.
const LAYERS: &[&[&str]] = &[
    &["build_info", "domain", "feed", "telemetry", "config"],
    &["store"],
    &["queue", "outbound", "limits", "metrics"],
    &["live", "delivery", "distribution", "verification", "upkeep"],
    &["runtime"],
    &["admin", "http"],
    &["app", "cli"],
];

/// (layer, position within it) of each module.
fn ranks() -> BTreeMap<&'static str, (usize, usize)> {
    LAYERS
        .iter()
        .enumerate()
        .flat_map(|(layer, modules)| {
            modules
                .iter()
                .enumerate()
                .map(move |(i, m)| (*m, (layer, i)))
        })
        .collect()
}

/// Whether `from` may name `to`: a lower layer, or an earlier module of its own.
fn may_use(ranks: &BTreeMap<&str, (usize, usize)>, from: &str, to: &str) -> bool {
    let (a, b) = (ranks[from], ranks[to]);
    b.0 < a.0 || (b.0 == a.0 && b.1 < a.1)
}

/// The text of a source file without comments and `#[cfg(test)] mod … { … }` blocks.
fn code_of(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find("#[cfg(test)]") {
        out.push_str(&rest[..at]);
        let after = &rest[at..];
        let is_mod = after["#[cfg(test)]".len()..]
            .trim_start()
            .starts_with("mod ");
        match (is_mod, after.find('{')) {
            (true, Some(open)) => {
                let mut depth = 0usize;
                let mut end = after.len();
                for (i, c) in after[open..].char_indices() {
                    match c {
                        '{' => depth += 1,
                        '}' => {
                            depth -= 1;
                            if depth == 0 {
                                end = open + i + 1;
                                break;
                            }
                        }
                        _ => {}
                    }
                }
                rest = &after[end..];
            }
            _ => {
                out.push_str("#[cfg(test)]");
                rest = &after["#[cfg(test)]".len()..];
            }
        }
    }
    out.push_str(rest);
    out.lines()
        .map(|line| match line.find("//") {
            Some(at) => &line[..at],
            None => line,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// The top-level modules a piece of code names with `crate::` (also inside `use crate::{…}`).
fn named_modules(code: &str, modules: &BTreeMap<&str, (usize, usize)>) -> Vec<String> {
    let mut named = Vec::new();
    for (at, _) in code.match_indices("crate::") {
        let rest = &code[at + "crate::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            // Top-level names at depth 0 of the group.
            let mut depth = 0usize;
            let mut word = String::new();
            let mut start_of_item = true;
            for c in group.chars() {
                match c {
                    '{' => {
                        depth += 1;
                        start_of_item = false;
                    }
                    '}' if depth == 0 => break,
                    '}' => depth -= 1,
                    ',' if depth == 0 => start_of_item = true,
                    c if start_of_item && (c.is_alphanumeric() || c == '_') => word.push(c),
                    _ => {
                        if !word.is_empty() {
                            named.push(std::mem::take(&mut word));
                        }
                        if !c.is_whitespace() {
                            start_of_item = false;
                        }
                    }
                }
            }
        } else {
            let word: String = rest
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            named.push(word);
        }
    }
    named.retain(|m| modules.contains_key(m.as_str()));
    named
}

fn sources(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for entry in fs::read_dir(dir).expect("src/ is readable").flatten() {
        let path = entry.path();
        if path.is_dir() {
            sources(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

#[test]
fn every_module_uses_only_the_layers_below_it() {
    let ranks = ranks();
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    sources(&src, &mut files);
    let mut seen = std::collections::BTreeSet::new();
    let mut wrong = Vec::new();
    for file in &files {
        let relative = file.strip_prefix(&src).expect("under src/");
        let first = relative
            .components()
            .next()
            .and_then(|c| c.as_os_str().to_str())
            .expect("a name");
        let module = first.trim_end_matches(".rs");
        if module == "lib" || module == "main" {
            continue;
        }
        assert!(
            ranks.contains_key(module),
            "src/{} belongs to a module no layer lists: add `{module}` to LAYERS here and to docs/architecture.md",
            relative.display()
        );
        seen.insert(module.to_owned());
        let code = code_of(&fs::read_to_string(file).expect("readable"));
        for named in named_modules(&code, &ranks) {
            if named != module && !may_use(&ranks, module, &named) {
                wrong.push(format!("src/{} names crate::{named}", relative.display()));
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "modules naming a module of their own layer listed after them, or of a higher layer:\n{}",
        wrong.join("\n")
    );
    let listed: std::collections::BTreeSet<String> =
        ranks.keys().map(|m| (*m).to_owned()).collect();
    assert_eq!(seen, listed, "LAYERS lists exactly the modules of src/");
}

#[test]
fn the_reader_finds_the_names_a_use_groups() {
    let ranks = ranks();
    let code = code_of(
        "use crate::{\n    store::{Db, Tx},\n    queue::Outbox, // crate::http\n};\nlet x = crate::live::Live::new();\n#[cfg(test)]\nmod tests { use crate::app; }\n",
    );
    assert_eq!(named_modules(&code, &ranks), ["store", "queue", "live"]);
    assert!(may_use(&ranks, "delivery", "live"));
    assert!(!may_use(&ranks, "live", "delivery"));
    assert!(!may_use(&ranks, "store", "queue"));
}
