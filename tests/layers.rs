//! The layers of docs/architecture.md, checked: a module may import only
//! the layers below it. Reads the sources; fails naming the file, the line
//! and the rule it breaks.

use std::path::{Path, PathBuf};

/// (folder under src/, paths it must never name, why)
const RULES: &[(&str, &[&str], &str)] = &[
    (
        "api",
        &["crate::domain", "crate::controller", "crate::runtime"],
        "the custom resources are the bottom layer",
    ),
    (
        "domain",
        &[
            "crate::controller",
            "crate::runtime",
            "kube::api::Api",
            "kube::Client",
        ],
        "the domain is pure: no API calls, no process concerns",
    ),
    (
        "runtime",
        &["crate::controller", "crate::domain"],
        "the runtime serves the controllers and knows no rules",
    ),
    (
        "cli",
        &["crate::controller", "crate::runtime"],
        "the kubectl plugin is a client with the caller's rights, never the controller",
    ),
];

fn sources(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        panic!("cannot read {}", dir.display())
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            sources(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

#[test]
fn every_layer_imports_only_the_layers_below_it() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut broken = Vec::new();
    for (layer, forbidden, why) in RULES {
        let mut files = Vec::new();
        sources(&src.join(layer), &mut files);
        assert!(
            !files.is_empty(),
            "src/{layer} has no sources: is the layout still the documented one?"
        );
        for file in files {
            let text = std::fs::read_to_string(&file)
                .unwrap_or_else(|e| panic!("cannot read {}: {e}", file.display()));
            for (n, line) in text.lines().enumerate() {
                let code = line.split("//").next().unwrap_or_default();
                for f in forbidden.iter().filter(|f| code.contains(*f)) {
                    broken.push(format!(
                        "{}:{}: names {f}, but {why}",
                        file.strip_prefix(&src).unwrap_or(&file).display(),
                        n + 1
                    ));
                }
            }
        }
    }
    assert!(
        broken.is_empty(),
        "layer rules broken:\n{}",
        broken.join("\n")
    );
}
