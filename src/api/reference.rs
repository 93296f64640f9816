//! The CRD reference (`docs/crd-reference.md`), rendered from the same schema the API server
//! enforces, so the document cannot drift from the behaviour. Pure.

use serde_json::Value;

use super::crds;

/// Render the reference of the three kinds as Markdown.
pub fn markdown() -> String {
    let mut out = String::from(
        "# CRD reference\n\n\
         Generated from the Rust types by `tailkeeper crds --markdown` (a test fails when this \
         file drifts). Group `tailkeeper.io`, version `v1alpha1`; every kind is namespaced and \
         has a status subresource.\n\n\
         Durations use Go's syntax (`90s`, `15m`, `1h30m`). The CEL rules listed under each table are \
         checked by the API server, which refuses a violating object with the message shown.\n",
    );
    for crd in crds() {
        let value = match serde_json::to_value(&crd) {
            Ok(v) => v,
            Err(_) => continue,
        };
        let spec = &value["spec"];
        let kind = spec["names"]["kind"].as_str().unwrap_or_default();
        let short: Vec<&str> = spec["names"]["shortNames"]
            .as_array()
            .map(|a| a.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        let version = &spec["versions"][0];
        let schema = &version["schema"]["openAPIV3Schema"];
        out.push_str(&format!("\n## {kind}\n\n"));
        // The derive describes the top level generically; the spec type's own doc says what the
        // kind is for.
        let about = schema["properties"]["spec"]["description"]
            .as_str()
            .or(schema["description"].as_str());
        if let Some(d) = about {
            out.push_str(&format!("{}\n\n", one_line(d)));
        }
        out.push_str(&format!(
            "Short names: {}. Plural: `{}`.\n\n",
            short
                .iter()
                .map(|s| format!("`{s}`"))
                .collect::<Vec<_>>()
                .join(", "),
            spec["names"]["plural"].as_str().unwrap_or_default()
        ));
        if let Some(cols) = version["additionalPrinterColumns"].as_array() {
            let names: Vec<String> = cols
                .iter()
                .filter_map(|c| c["name"].as_str().map(|n| format!("`{n}`")))
                .collect();
            out.push_str(&format!("`kubectl get` columns: {}.\n", names.join(", ")));
        }
        for part in ["spec", "status"] {
            let node = &schema["properties"][part];
            if node.is_null() {
                continue;
            }
            out.push_str(&format!(
                "\n### {part}\n\n| Field | Type | Default | Description |\n|---|---|---|---|\n"
            ));
            rows(&mut out, part, node);
            rules(&mut out, part, node);
        }
    }
    out
}

fn rows(out: &mut String, path: &str, node: &Value) {
    let Some(props) = node["properties"].as_object() else {
        return;
    };
    let required: Vec<&str> = node["required"]
        .as_array()
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    for (name, child) in props {
        let field = format!("{path}.{name}");
        let (ty, inner) = type_of(child);
        let default = match &child["default"] {
            Value::Null => String::new(),
            v => format!("`{v}`"),
        };
        let mut description = child["description"]
            .as_str()
            .map(one_line)
            .unwrap_or_default();
        if required.contains(&name.as_str()) {
            description = format!("**Required.** {description}");
        }
        if let Some(values) = child["enum"].as_array() {
            let v: Vec<String> = values
                .iter()
                .map(|x| format!("`{}`", x.as_str().unwrap_or_default()))
                .collect();
            description.push_str(&format!(" One of {}.", v.join(", ")));
        }
        out.push_str(&format!(
            "| `{field}` | {ty} | {default} | {} |\n",
            description.trim()
        ));
        if let Some(inner) = inner {
            let child_path = if ty.starts_with("[]") {
                format!("{field}[]")
            } else {
                field.clone()
            };
            rows(out, &child_path, inner);
        }
    }
}

/// CEL rules of a subtree, listed after its table.
fn rules(out: &mut String, path: &str, node: &Value) {
    let mut found = Vec::new();
    collect_rules(path, node, &mut found);
    if !found.is_empty() {
        out.push_str("\nCEL rules:\n\n");
        for (field, message) in found {
            out.push_str(&format!("- `{field}`: {message}\n"));
        }
    }
}

fn collect_rules(path: &str, node: &Value, found: &mut Vec<(String, String)>) {
    if let Some(list) = node["x-kubernetes-validations"].as_array() {
        for rule in list {
            let message = rule["message"]
                .as_str()
                .map(str::to_string)
                .unwrap_or_else(|| format!("`{}`", rule["rule"].as_str().unwrap_or_default()));
            found.push((path.to_string(), message));
        }
    }
    if let Some(props) = node["properties"].as_object() {
        for (name, child) in props {
            collect_rules(&format!("{path}.{name}"), child, found);
        }
    }
    if node["items"].is_object() {
        collect_rules(&format!("{path}[]"), &node["items"], found);
    }
}

/// A readable type and the schema whose fields to list beneath, if any.
fn type_of(node: &Value) -> (String, Option<&Value>) {
    match node["type"].as_str() {
        Some("array") => {
            let items = &node["items"];
            let (inner, nested) = type_of(items);
            (format!("[]{inner}"), nested)
        }
        Some("object") if node["properties"].is_object() => ("object".to_string(), Some(node)),
        Some("object") => ("map".to_string(), None),
        Some(t) => (
            match node["format"].as_str() {
                Some(f) => format!("{t} ({f})"),
                None => t.to_string(),
            },
            None,
        ),
        None if node["x-kubernetes-int-or-string"].as_bool() == Some(true) => {
            ("int or string".to_string(), None)
        }
        None => ("any".to_string(), None),
    }
}

fn one_line(s: &str) -> String {
    s.split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .replace('|', "\\|")
}
