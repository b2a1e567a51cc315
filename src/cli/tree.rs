//! The chain of objects as a tree, and its renderings (text, wide, JSON,
//! YAML, Graphviz dot): pure, so that the output is tested from fixtures.

use serde::Serialize;
use serde_json::Value;

/// Whether the caller could read an object.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum Access {
    /// Read with the caller's rights.
    Read,
    /// The caller may not read it (403): shown, never fetched another way.
    Forbidden,
    /// Named by another object, not there.
    NotFound,
}

/// One object of the chain.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Node {
    /// Kind (`ServiceInstance`, `Deployment`, ...), or `Note` for a line that
    /// says what could not be listed.
    pub kind: String,
    /// Namespace ("" for a note).
    pub namespace: String,
    /// Name (for a note: the text).
    pub name: String,
    /// spec.version or the source version, where the kind has one.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub version: String,
    /// status.phase, status.state, a grant's decision, or an object's health.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub phase: String,
    /// The Ready condition's status (True, False, Unknown), or sync state.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub ready: String,
    /// The Ready condition's reason (wide output).
    #[serde(skip_serializing_if = "String::is_empty")]
    pub reason: String,
    /// The Ready condition's message, or why the object is not healthy.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub message: String,
    /// Read, Forbidden or NotFound.
    pub access: Access,
    /// The object traced (the one named on the command line).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub traced: bool,
    /// What it leads to.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub children: Vec<Node>,
}

impl Node {
    /// A node for an object the caller could not read, or that is not there.
    pub fn unreadable(kind: &str, namespace: &str, name: &str, access: Access) -> Self {
        let message = match access {
            Access::Forbidden => "not allowed to read it with your rights",
            Access::NotFound => "not found",
            Access::Read => "",
        };
        Node {
            kind: kind.into(),
            namespace: namespace.into(),
            name: name.into(),
            version: String::new(),
            phase: String::new(),
            ready: String::new(),
            reason: String::new(),
            message: message.into(),
            access,
            traced: false,
            children: Vec::new(),
        }
    }

    /// A line that says what could not be listed or followed.
    pub fn note(text: impl Into<String>) -> Self {
        Node {
            kind: "Note".into(),
            namespace: String::new(),
            name: text.into(),
            version: String::new(),
            phase: String::new(),
            ready: String::new(),
            reason: String::new(),
            message: String::new(),
            access: Access::Read,
            traced: false,
            children: Vec::new(),
        }
    }

    /// A node from an object's JSON: version, phase and Ready as the
    /// computenest kinds write them.
    pub fn from_object(kind: &str, obj: &Value) -> Self {
        let s = |v: &Value| v.as_str().unwrap_or_default().to_string();
        let status = &obj["status"];
        let ready = status["conditions"]
            .as_array()
            .and_then(|cs| cs.iter().find(|c| c["type"] == "Ready"));
        let phase = [&status["phase"], &status["state"], &obj["spec"]["decision"]]
            .into_iter()
            .map(s)
            .find(|p| !p.is_empty())
            .unwrap_or_default();
        let version = [
            &status["version"],
            &obj["spec"]["version"],
            &status["sourceVersion"],
        ]
        .into_iter()
        .map(s)
        .find(|v| !v.is_empty())
        .unwrap_or_default();
        Node {
            kind: kind.into(),
            namespace: s(&obj["metadata"]["namespace"]),
            name: s(&obj["metadata"]["name"]),
            version,
            phase,
            ready: ready.map(|c| s(&c["status"])).unwrap_or_default(),
            reason: ready.map(|c| s(&c["reason"])).unwrap_or_default(),
            message: ready.map(|c| s(&c["message"])).unwrap_or_default(),
            access: Access::Read,
            traced: false,
            children: Vec::new(),
        }
    }
}

/// The longest message shown in the plain table (wide shows it whole).
const SHORT_MESSAGE: usize = 60;

fn short(text: &str, wide: bool) -> String {
    let line = text.lines().next().unwrap_or_default();
    match line.char_indices().nth(SHORT_MESSAGE) {
        Some((at, _)) if !wide => format!("{}...", &line[..at]),
        _ => line.to_string(),
    }
}

/// Rows of the table: (tree column, namespace, version, phase, ready, reason, message).
fn rows(node: &Node, prefix: &str, last: bool, root: bool, wide: bool, out: &mut Vec<[String; 7]>) {
    let branch = if root {
        String::new()
    } else if last {
        format!("{prefix}└─ ")
    } else {
        format!("{prefix}├─ ")
    };
    let mark = if node.traced { " *" } else { "" };
    let label = if node.kind == "Note" {
        format!("{branch}({})", node.name)
    } else {
        format!("{branch}{}/{}{mark}", node.kind, node.name)
    };
    out.push([
        label,
        node.namespace.clone(),
        node.version.clone(),
        node.phase.clone(),
        node.ready.clone(),
        node.reason.clone(),
        short(&node.message, wide),
    ]);
    let child_prefix = if root {
        String::new()
    } else if last {
        format!("{prefix}   ")
    } else {
        format!("{prefix}│  ")
    };
    for (i, c) in node.children.iter().enumerate() {
        rows(
            c,
            &child_prefix,
            i + 1 == node.children.len(),
            false,
            wide,
            out,
        );
    }
}

/// The tree as a table, one object a line, `├─`/`└─` for the chain; the
/// traced object is marked `*`. `wide` adds the reason and shows whole messages.
pub fn text(root: &Node, wide: bool) -> String {
    let mut table = vec![[
        "NAME".to_string(),
        "NAMESPACE".into(),
        "VERSION".into(),
        "PHASE".into(),
        "READY".into(),
        "REASON".into(),
        "MESSAGE".into(),
    ]];
    rows(root, "", true, true, wide, &mut table);
    let columns: Vec<usize> = if wide {
        vec![0, 1, 2, 3, 4, 5, 6]
    } else {
        vec![0, 1, 2, 3, 4, 6]
    };
    // A note is one text across the row: it takes no part in the widths.
    let is_note = |r: &[String; 7]| r[0].ends_with(')') && r[1..].iter().all(String::is_empty);
    let width = |c: usize| {
        table
            .iter()
            .filter(|r| !is_note(r))
            .map(|r| r[c].chars().count())
            .max()
            .unwrap_or(0)
    };
    let widths: Vec<usize> = columns.iter().map(|c| width(*c)).collect();
    let mut out = String::new();
    for row in &table {
        if is_note(row) {
            out.push_str(&row[0]);
            out.push('\n');
            continue;
        }
        let mut line = String::new();
        for (i, c) in columns.iter().enumerate() {
            let cell = &row[*c];
            if i + 1 == columns.len() {
                line.push_str(cell);
            } else {
                line.push_str(cell);
                let pad = widths[i] - cell.chars().count() + 2;
                line.push_str(&" ".repeat(pad));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

fn dot_id(n: &Node) -> String {
    format!("{}/{}/{}", n.kind, n.namespace, n.name)
}

fn dot_escape(s: &str) -> String {
    s.replace('\\', "\\\\").replace('"', "\\\"")
}

fn dot_nodes(n: &Node, out: &mut String) {
    let color = match (n.access, n.ready.as_str()) {
        (Access::Forbidden | Access::NotFound, _) => "gray",
        (_, "True") => "darkgreen",
        (_, "False") => "red",
        _ => "black",
    };
    let label = if n.kind == "Note" {
        n.name.clone()
    } else {
        format!(
            "{}\\n{}/{}{}",
            n.kind,
            n.namespace,
            n.name,
            if n.phase.is_empty() {
                String::new()
            } else {
                format!("\\n{}", n.phase)
            }
        )
    };
    out.push_str(&format!(
        "  \"{}\" [label=\"{}\", color={color}{}];\n",
        dot_escape(&dot_id(n)),
        dot_escape(&label).replace("\\\\n", "\\n"),
        if n.traced { ", penwidth=3" } else { "" }
    ));
    for c in &n.children {
        dot_nodes(c, out);
        out.push_str(&format!(
            "  \"{}\" -> \"{}\";\n",
            dot_escape(&dot_id(n)),
            dot_escape(&dot_id(c))
        ));
    }
}

/// The tree as a Graphviz digraph.
pub fn dot(root: &Node) -> String {
    let mut out = String::from("digraph computenest {\n  rankdir=LR;\n  node [shape=box];\n");
    dot_nodes(root, &mut out);
    out.push_str("}\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn chain() -> Node {
        let mut svc = Node::from_object(
            "Service",
            &json!({"metadata": {"namespace": "isv", "name": "db"}, "spec": {"version": "1.4.2"},
                    "status": {"conditions": [{"type": "Ready", "status": "True", "reason": "Published", "message": "sellable"}]}}),
        );
        let mut grant = Node::from_object(
            "DistributionGrant",
            &json!({"metadata": {"namespace": "isv", "name": "db.dist"}, "spec": {"decision": "Approved"},
                    "status": {"state": "Approved", "conditions": [{"type": "Ready", "status": "True", "reason": "Approved", "message": "ok"}]}}),
        );
        let mut derived = Node::from_object(
            "DerivedService",
            &json!({"metadata": {"namespace": "dist", "name": "db-plus"},
                    "status": {"sourceVersion": "1.4.2", "conditions": [{"type": "Ready", "status": "True", "reason": "Sellable", "message": "sold as Scenario2"}]}}),
        );
        let mut inst = Node::from_object(
            "ServiceInstance",
            &json!({"metadata": {"namespace": "cust", "name": "shop"},
                    "status": {"phase": "Deploying", "conditions": [{"type": "Ready", "status": "False", "reason": "Progressing",
                      "message": "3 objects written to namespace cn-cust-shop-1a2b (Scenario2, owned by the Distributor); waiting for: Deployment cn-cust-shop-1a2b/shop: Progressing"}]}}),
        );
        inst.traced = true;
        let mut dep = Node::unreadable("Deployment", "cn-cust-shop-1a2b", "shop", Access::Read);
        dep.phase = "Progressing".into();
        dep.ready = "Synced".into();
        dep.message = "1 of 2 replicas available".into();
        let order = Node::unreadable("Order", "dist", "cust-shop-sale-3c4d", Access::Forbidden);
        inst.children = vec![
            dep,
            order,
            Node::note(
                "AccessRequests: not allowed to list them in namespace cust with your rights",
            ),
        ];
        derived.children = vec![inst];
        grant.children = vec![derived];
        svc.children = vec![grant];
        svc
    }

    /// The tree as a person reads it, compared with tests/golden/trace.txt;
    /// `UPDATE_GOLDEN=1 cargo test --lib cli::tree` writes it anew (review the diff).
    #[test]
    fn the_tree_matches_the_golden_output() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden/trace.txt");
        let got = text(&chain(), false);
        if std::env::var_os("UPDATE_GOLDEN").is_some() {
            std::fs::write(&path, &got).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        }
        let golden = std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("{}: {e} (UPDATE_GOLDEN=1 writes it)", path.display()));
        assert_eq!(got, golden, "got:\n{got}\ngolden:\n{golden}");
    }

    #[test]
    fn wide_shows_the_reason_and_whole_messages() {
        let wide = text(&chain(), true);
        assert!(wide.contains("REASON"));
        assert!(wide.contains("waiting for: Deployment cn-cust-shop-1a2b/shop: Progressing"));
        let plain = text(&chain(), false);
        assert!(!plain.contains("REASON"));
        assert!(plain.contains("..."));
    }

    #[test]
    fn dot_names_every_edge_and_marks_the_traced_object() {
        let d = dot(&chain());
        assert!(d.starts_with("digraph computenest {"));
        assert_eq!(d.matches(" -> ").count(), 6, "{d}");
        assert!(d.contains("penwidth=3"));
        assert!(d.contains("color=gray"), "a forbidden object is gray: {d}");
    }

    #[test]
    fn json_keeps_the_structure() {
        let v = serde_json::to_value(chain()).unwrap_or_default();
        assert_eq!(
            v["children"][0]["children"][0]["children"][0]["name"],
            "shop"
        );
        assert_eq!(
            v["children"][0]["children"][0]["children"][0]["traced"],
            true
        );
        assert_eq!(
            v["children"][0]["children"][0]["children"][0]["children"][1]["access"],
            "Forbidden"
        );
    }
}
