//! The committed CRDs are exactly what the Rust types generate, and the schema carries the
//! validation rules users rely on.

use std::path::Path;

#[test]
fn committed_crds_match_the_rust_types() {
    let generated = tailkeeper::api::crds_yaml().expect("CRDs render");
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("crds/tailkeeper.io.yaml");
    let committed = std::fs::read_to_string(&path).expect("crds/tailkeeper.io.yaml exists");
    assert!(
        generated == committed,
        "crds/tailkeeper.io.yaml is out of date: run `cargo run -- crds > crds/tailkeeper.io.yaml`"
    );
}

#[test]
fn schema_carries_the_cel_rules() {
    // Read the rules and messages from the structure, not from YAML text (YAML may quote them).
    fn collect(value: &serde_json::Value, out: &mut Vec<String>) {
        match value {
            serde_json::Value::Object(map) => {
                for (key, v) in map {
                    match (key.as_str(), v) {
                        ("rule" | "message", serde_json::Value::String(s)) => out.push(s.clone()),
                        _ => collect(v, out),
                    }
                }
            }
            serde_json::Value::Array(items) => items.iter().for_each(|v| collect(v, out)),
            _ => {}
        }
    }
    let mut texts = Vec::new();
    for crd in tailkeeper::api::crds() {
        collect(
            &serde_json::to_value(&crd).expect("CRD serialises"),
            &mut texts,
        );
    }
    for rule in [
        // durations parse and stay under limits
        "duration(self) >= duration('10s') && duration(self) <= duration('24h')",
        "duration(self) > duration('0s') && duration(self) <= duration('2160h')",
        // exactly one kind of access per grant
        "[has(self.group), has(self.role), has(self.rule), has(self.sshRule), has(self.postureAttribute)].filter(x, x).size() == 1",
        // e-mail-like login names
        "self.matches('^[^@\\\\s]+@[^@\\\\s]+$')",
        // immutable fields stay immutable
        "tailnet is immutable",
        "integrationRef is immutable",
        "user is immutable",
        "approval is immutable once set",
    ] {
        assert!(
            texts.iter().any(|t| t.contains(rule)),
            "generated CRDs lack the rule {rule:?}"
        );
    }
    let yaml = tailkeeper::api::crds_yaml().expect("CRDs render");
    assert!(
        yaml.contains("x-kubernetes-list-type: map"),
        "conditions must be a list-map"
    );
}

#[test]
fn crd_reference_doc_matches_the_schema() {
    let generated = tailkeeper::api::reference_markdown();
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/crd-reference.md");
    let committed = std::fs::read_to_string(&path).expect("docs/crd-reference.md exists");
    assert!(
        generated == committed,
        "docs/crd-reference.md is out of date: run `cargo run -- crds --markdown > docs/crd-reference.md`"
    );
    // It documents what users need to know, straight from the schema.
    for needle in [
        "| `spec.syncInterval` | string | `\"5m\"` |",
        "syncInterval must be between 10s and 24h",
        "`spec.access.group`",
        "approval is immutable once set",
    ] {
        assert!(generated.contains(needle), "the reference lacks {needle:?}");
    }
}
