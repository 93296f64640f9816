//! Structural validation of a parsed policy file into a typed [`Policy`].
//!
//! Top-level keys are matched case-insensitively, as Tailscale's Go decoder does, which is how
//! both `acls` and the legacy `ACLs` (and `Groups`, `TagOwners`, ...) are accepted. Sections the
//! simulator does not evaluate (`postures`, `nodeAttrs`, network options, ...) are accepted
//! without checks. Checked:
//! - `groups`: names start with `group:`, members are strings, no group inside a group;
//! - `tagOwners`: names start with `tag:`, owners are strings;
//! - `hosts`: values are strings;
//! - `acls`: `action` (`accept`), `src` and `dst` lists (or their legacy names `users` and
//!   `ports`, still accepted by Tailscale and still modelled by its Go client), every `dst` is
//!   `host:ports`;
//! - `grants`: `src` and `dst` lists and at least one of `ip` / `app`; `ip` entries parse;
//! - `ssh`: `action` (`accept`/`check`), `src`, `dst`, `users`; `dst` never contains `*`;
//! - `tests` / `sshTests`: shapes, and test destinations carry a single port; a test's legacy
//!   `user` and `allow` stand for `src` and `accept`;
//! - every `group:` referenced by a rule or test is defined (SCIM groups `group:x@domain`
//!   excepted, as they live outside the file).
//!
//! Unlike Tailscale, tags are not required to appear in `tagOwners`.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Map, Value};

/// Known top-level sections, lowercase.
const KNOWN_KEYS: &[&str] = &[
    "acls",
    "attrconfig",
    "attrs",
    "autoapprovers",
    "defaultsrcposture",
    "derpmap",
    "disableipv4",
    "externaltailnets",
    "grants",
    "groups",
    "hosts",
    "ipsets",
    "nodeattrs",
    "onecgnatroute",
    "postures",
    "randomizeclientport",
    "ssh",
    "sshtests",
    "tagowners",
    "tests",
];

/// The parts of a policy that access evaluation needs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Policy {
    pub groups: BTreeMap<String, Vec<String>>,
    pub hosts: BTreeMap<String, String>,
    pub acls: Vec<AclRule>,
    pub grants: Vec<Grant>,
    pub ssh: Vec<SshRule>,
    pub tests: Vec<AclTest>,
    pub ssh_tests: Vec<SshTest>,
}

/// A legacy `acls` entry (only `accept` exists).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AclRule {
    pub src: Vec<String>,
    pub dst: Vec<HostPorts>,
    pub proto: Option<String>,
}

/// `host:ports` from an ACL destination.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostPorts {
    pub host: String,
    pub ports: PortSet,
}

/// `*` or a union of inclusive port ranges.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PortSet {
    Any,
    Ranges(Vec<(u16, u16)>),
}

impl PortSet {
    pub fn contains(&self, port: u16) -> bool {
        match self {
            PortSet::Any => true,
            PortSet::Ranges(ranges) => ranges.iter().any(|&(lo, hi)| lo <= port && port <= hi),
        }
    }
}

/// A `grants` entry; `ip` holds the network capabilities (app capabilities grant no traffic).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    pub src: Vec<String>,
    pub dst: Vec<String>,
    pub ip: Vec<IpCap>,
}

/// One `ip` entry of a grant: `*`, `443`, `80-90`, `tcp:443`, `udp:*`, ...
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IpCap {
    /// `None` means every protocol.
    pub proto: Option<String>,
    pub ports: PortSet,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SshAction {
    Accept,
    Check,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SshRule {
    pub action: SshAction,
    pub src: Vec<String>,
    pub dst: Vec<String>,
    pub users: Vec<String>,
}

/// A `tests` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AclTest {
    pub src: String,
    pub proto: Option<String>,
    pub accept: Vec<TestDst>,
    pub deny: Vec<TestDst>,
}

/// `host:port` from a test, with the original text for error messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TestDst {
    pub text: String,
    pub host: String,
    pub port: u16,
}

/// An `sshTests` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SshTest {
    pub src: String,
    pub dst: Vec<String>,
    pub accept: Vec<String>,
    pub check: Vec<String>,
    pub deny: Vec<String>,
}

/// Validate a parsed policy file. The error is the `message` Tailscale would answer.
pub fn parse_policy(value: &Value) -> Result<Policy, String> {
    let top = value
        .as_object()
        .ok_or_else(|| "policy file must be a JSON object at the top level".to_string())?;

    let mut sections: BTreeMap<&'static str, (&str, &Value)> = BTreeMap::new();
    for (key, value) in top {
        let lower = key.to_ascii_lowercase();
        let known = KNOWN_KEYS
            .iter()
            .find(|k| **k == lower)
            .ok_or_else(|| format!("unknown top-level field {key:?} in policy file"))?;
        if let Some((other, _)) = sections.insert(known, (key, value)) {
            return Err(format!(
                "policy file has both {other:?} and {key:?}; use only one"
            ));
        }
    }
    let section = |name: &str| sections.get(name).map(|(key, value)| (*key, *value));

    let mut policy = Policy::default();
    if let Some((key, v)) = section("groups") {
        policy.groups = parse_groups(key, v)?;
    }
    if let Some((key, v)) = section("tagowners") {
        parse_tag_owners(key, v)?;
    }
    if let Some((key, v)) = section("hosts") {
        policy.hosts = parse_hosts(key, v)?;
    }
    if let Some((key, v)) = section("acls") {
        policy.acls = each_object(key, v)?
            .map(|(path, obj)| parse_acl(&path, obj))
            .collect::<Result<_, _>>()?;
    }
    if let Some((key, v)) = section("grants") {
        policy.grants = each_object(key, v)?
            .map(|(path, obj)| parse_grant(&path, obj))
            .collect::<Result<_, _>>()?;
    }
    if let Some((key, v)) = section("ssh") {
        policy.ssh = each_object(key, v)?
            .map(|(path, obj)| parse_ssh_rule(&path, obj))
            .collect::<Result<_, _>>()?;
    }
    if let Some((key, v)) = section("tests") {
        policy.tests = parse_tests(v, key)?;
    }
    if let Some((key, v)) = section("sshtests") {
        policy.ssh_tests = each_object(key, v)?
            .map(|(path, obj)| parse_ssh_test(&path, obj))
            .collect::<Result<_, _>>()?;
    }
    check_group_references(&policy)?;
    Ok(policy)
}

/// Validate a `tests` list (also used for the bare-list form of `/acl/validate`).
pub fn parse_tests(value: &Value, key: &str) -> Result<Vec<AclTest>, String> {
    each_object(key, value)?
        .map(|(path, obj)| parse_acl_test(&path, obj))
        .collect()
}

fn parse_groups(key: &str, value: &Value) -> Result<BTreeMap<String, Vec<String>>, String> {
    let map = value
        .as_object()
        .ok_or_else(|| format!("{key}: must be an object"))?;
    let mut groups = BTreeMap::new();
    for (name, members) in map {
        if !name.starts_with("group:") || name.len() == "group:".len() {
            return Err(format!(
                "group {name:?}: group names must start with \"group:\""
            ));
        }
        let members = string_list(&format!("{key}[{name:?}]"), members)?;
        if let Some(nested) = members.iter().find(|m| m.starts_with("group:")) {
            return Err(format!(
                "group {name:?} contains group {nested:?}: groups cannot contain other groups"
            ));
        }
        groups.insert(name.clone(), members);
    }
    Ok(groups)
}

fn parse_tag_owners(key: &str, value: &Value) -> Result<(), String> {
    let map = value
        .as_object()
        .ok_or_else(|| format!("{key}: must be an object"))?;
    for (tag, owners) in map {
        if !tag.starts_with("tag:") || tag.len() == "tag:".len() {
            return Err(format!(
                "tagOwners: {tag:?}: tag names must start with \"tag:\""
            ));
        }
        string_list(&format!("{key}[{tag:?}]"), owners)?;
    }
    Ok(())
}

fn parse_hosts(key: &str, value: &Value) -> Result<BTreeMap<String, String>, String> {
    let map = value
        .as_object()
        .ok_or_else(|| format!("{key}: must be an object"))?;
    map.iter()
        .map(|(name, addr)| {
            addr.as_str()
                .map(|a| (name.clone(), a.to_string()))
                .ok_or_else(|| format!("{key}[{name:?}]: must be an IP address or CIDR string"))
        })
        .collect()
}

fn parse_acl(path: &str, obj: &Map<String, Value>) -> Result<AclRule, String> {
    let action = required_str(path, obj, "action")?;
    if action != "accept" {
        return Err(format!(
            "{path}: action {action:?} is not supported; only \"accept\""
        ));
    }
    let src = aliased_list(path, obj, "src", "users")?;
    let dst = aliased_list(path, obj, "dst", "ports")?
        .iter()
        .map(|d| parse_host_ports(d).map_err(|e| format!("{path}: dst {d:?}: {e}")))
        .collect::<Result<_, _>>()?;
    let proto = optional_str(path, obj, "proto")?;
    Ok(AclRule { src, dst, proto })
}

fn parse_grant(path: &str, obj: &Map<String, Value>) -> Result<Grant, String> {
    let src = required_list(path, obj, "src")?;
    let dst = required_list(path, obj, "dst")?;
    let ip = match obj.get("ip") {
        Some(v) => string_list(&format!("{path}.ip"), v)?
            .iter()
            .map(|cap| parse_ip_cap(cap).map_err(|e| format!("{path}: ip {cap:?}: {e}")))
            .collect::<Result<Vec<_>, _>>()?,
        None => Vec::new(),
    };
    if obj.get("ip").is_none() && obj.get("app").is_none() {
        return Err(format!("{path}: a grant needs \"ip\" or \"app\""));
    }
    if let Some(app) = obj.get("app") {
        if !app.is_object() {
            return Err(format!("{path}.app: must be an object"));
        }
    }
    Ok(Grant { src, dst, ip })
}

fn parse_ssh_rule(path: &str, obj: &Map<String, Value>) -> Result<SshRule, String> {
    let action = match required_str(path, obj, "action")? {
        "accept" => SshAction::Accept,
        "check" => SshAction::Check,
        other => {
            return Err(format!(
                "{path}: action {other:?} must be \"accept\" or \"check\""
            ))
        }
    };
    let src = required_list(path, obj, "src")?;
    let dst = required_list(path, obj, "dst")?;
    if dst.iter().any(|d| d.contains('*')) {
        return Err(format!(
            "{path}: dst {dst:?}: \"*\" is not allowed in ssh destinations; use tags, users or autogroup:self"
        ));
    }
    let users = required_list(path, obj, "users")?;
    if users.is_empty() {
        return Err(format!("{path}: \"users\" must not be empty"));
    }
    Ok(SshRule {
        action,
        src,
        dst,
        users,
    })
}

fn parse_acl_test(path: &str, obj: &Map<String, Value>) -> Result<AclTest, String> {
    let src = match (obj.contains_key("src"), obj.contains_key("user")) {
        (true, true) => return Err(both_names(path, "src", "user")),
        (false, true) => required_str(path, obj, "user")?,
        _ => required_str(path, obj, "src")?,
    }
    .to_string();
    let proto = optional_str(path, obj, "proto")?;
    let dsts = |field: &str| -> Result<Vec<TestDst>, String> {
        optional_list(path, obj, field)?
            .into_iter()
            .map(|text| parse_test_dst(&text).map_err(|e| format!("{path}: {field} {text:?}: {e}")))
            .collect()
    };
    if obj.contains_key("accept") && obj.contains_key("allow") {
        return Err(both_names(path, "accept", "allow"));
    }
    let mut accept = dsts("accept")?;
    accept.extend(dsts("allow")?);
    Ok(AclTest {
        src,
        proto,
        accept,
        deny: dsts("deny")?,
    })
}

fn parse_ssh_test(path: &str, obj: &Map<String, Value>) -> Result<SshTest, String> {
    Ok(SshTest {
        src: required_str(path, obj, "src")?.to_string(),
        dst: required_list(path, obj, "dst")?,
        accept: optional_list(path, obj, "accept")?,
        check: optional_list(path, obj, "check")?,
        deny: optional_list(path, obj, "deny")?,
    })
}

/// Split `host:ports` at the last colon (`tag:web:443`, `group:eng:*`, `[fd7a::1]:22`).
pub fn parse_host_ports(text: &str) -> Result<HostPorts, String> {
    let (host, ports) = text
        .rsplit_once(':')
        .ok_or_else(|| "expected host:ports".to_string())?;
    if host.is_empty() {
        return Err("missing host".to_string());
    }
    Ok(HostPorts {
        host: host.to_string(),
        ports: parse_ports(ports)?,
    })
}

/// `*`, `22`, `80-90`, or a comma list of those.
pub fn parse_ports(text: &str) -> Result<PortSet, String> {
    if text == "*" {
        return Ok(PortSet::Any);
    }
    let mut ranges = Vec::new();
    for part in text.split(',') {
        let (lo, hi) = match part.split_once('-') {
            Some((lo, hi)) => (parse_port(lo)?, parse_port(hi)?),
            None => {
                let p = parse_port(part)?;
                (p, p)
            }
        };
        if lo > hi {
            return Err(format!("invalid port range {part:?}"));
        }
        ranges.push((lo, hi));
    }
    Ok(PortSet::Ranges(ranges))
}

fn parse_port(text: &str) -> Result<u16, String> {
    text.trim()
        .parse::<u16>()
        .map_err(|_| format!("invalid port {text:?}"))
}

fn parse_ip_cap(text: &str) -> Result<IpCap, String> {
    if text == "*" {
        return Ok(IpCap {
            proto: None,
            ports: PortSet::Any,
        });
    }
    match text.split_once(':') {
        Some((proto, ports)) => Ok(IpCap {
            proto: Some(normalize_proto(proto)),
            ports: parse_ports(ports)?,
        }),
        None => Ok(IpCap {
            proto: None,
            ports: parse_ports(text)?,
        }),
    }
}

fn parse_test_dst(text: &str) -> Result<TestDst, String> {
    let (host, port) = text
        .rsplit_once(':')
        .ok_or_else(|| "expected host:port".to_string())?;
    if host.is_empty() {
        return Err("missing host".to_string());
    }
    Ok(TestDst {
        text: text.to_string(),
        host: host.to_string(),
        port: port
            .parse()
            .map_err(|_| format!("test destinations need a single port, not {port:?}"))?,
    })
}

/// Protocol names as Tailscale spells them, so `6` and `tcp` compare equal.
pub fn normalize_proto(proto: &str) -> String {
    match proto.to_ascii_lowercase().as_str() {
        "6" => "tcp".to_string(),
        "17" => "udp".to_string(),
        "1" => "icmp".to_string(),
        other => other.to_string(),
    }
}

fn check_group_references(policy: &Policy) -> Result<(), String> {
    let mut referenced: BTreeSet<&str> = BTreeSet::new();
    for rule in &policy.acls {
        referenced.extend(rule.src.iter().map(String::as_str));
        referenced.extend(rule.dst.iter().map(|d| d.host.as_str()));
    }
    for grant in &policy.grants {
        referenced.extend(grant.src.iter().chain(&grant.dst).map(String::as_str));
    }
    for rule in &policy.ssh {
        referenced.extend(rule.src.iter().chain(&rule.dst).map(String::as_str));
    }
    for test in &policy.tests {
        referenced.insert(&test.src);
    }
    for test in &policy.ssh_tests {
        referenced.insert(&test.src);
    }
    let missing = referenced.into_iter().find(|name| {
        name.starts_with("group:") && !name.contains('@') && !policy.groups.contains_key(*name)
    });
    match missing {
        Some(name) => Err(format!("group {name:?} is not defined in \"groups\"")),
        None => Ok(()),
    }
}

/// The entries of an array of objects, each with a path like `acls[2]` for messages.
fn each_object<'a>(
    key: &'a str,
    value: &'a Value,
) -> Result<impl Iterator<Item = (String, &'a Map<String, Value>)> + 'a, String> {
    let items = value
        .as_array()
        .ok_or_else(|| format!("{key}: must be a list"))?;
    let objects = items
        .iter()
        .enumerate()
        .map(|(i, item)| {
            item.as_object()
                .map(|obj| (format!("{key}[{i}]"), obj))
                .ok_or_else(|| format!("{key}[{i}]: must be an object"))
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(objects.into_iter())
}

fn string_list(path: &str, value: &Value) -> Result<Vec<String>, String> {
    let items = value
        .as_array()
        .ok_or_else(|| format!("{path}: must be a list of strings"))?;
    items
        .iter()
        .map(|item| {
            item.as_str()
                .map(str::to_string)
                .ok_or_else(|| format!("{path}: {item} is not a string"))
        })
        .collect()
}

fn required_list(path: &str, obj: &Map<String, Value>, field: &str) -> Result<Vec<String>, String> {
    let value = obj
        .get(field)
        .ok_or_else(|| format!("{path}: missing {field:?}"))?;
    string_list(&format!("{path}.{field}"), value)
}

/// A required list that may also appear under its legacy name (`src`/`users`, `dst`/`ports`).
fn aliased_list(
    path: &str,
    obj: &Map<String, Value>,
    field: &str,
    legacy: &str,
) -> Result<Vec<String>, String> {
    match (obj.contains_key(field), obj.contains_key(legacy)) {
        (true, true) => Err(both_names(path, field, legacy)),
        (false, true) => required_list(path, obj, legacy),
        _ => required_list(path, obj, field),
    }
}

fn both_names(path: &str, field: &str, legacy: &str) -> String {
    format!("{path}: use {field:?} or its legacy name {legacy:?}, not both")
}

fn optional_list(path: &str, obj: &Map<String, Value>, field: &str) -> Result<Vec<String>, String> {
    match obj.get(field) {
        Some(value) => string_list(&format!("{path}.{field}"), value),
        None => Ok(Vec::new()),
    }
}

fn required_str<'a>(
    path: &str,
    obj: &'a Map<String, Value>,
    field: &str,
) -> Result<&'a str, String> {
    obj.get(field)
        .ok_or_else(|| format!("{path}: missing {field:?}"))?
        .as_str()
        .ok_or_else(|| format!("{path}.{field}: must be a string"))
}

fn optional_str(
    path: &str,
    obj: &Map<String, Value>,
    field: &str,
) -> Result<Option<String>, String> {
    match obj.get(field) {
        None => Ok(None),
        Some(Value::String(s)) if s.is_empty() => Ok(None),
        Some(Value::String(s)) => Ok(Some(normalize_proto(s))),
        Some(_) => Err(format!("{path}.{field}: must be a string")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn err(value: Value) -> String {
        parse_policy(&value).expect_err("policy should be rejected")
    }

    #[test]
    fn accepts_legacy_capitalized_keys_and_network_options() {
        let policy = parse_policy(&json!({
            "Groups": {"group:eng": ["a@example.com"]},
            "ACLs": [{"action": "accept", "src": ["group:eng"], "dst": ["*:*"]}],
            "TagOwners": {"tag:web": ["autogroup:admin"]},
            "Hosts": {"db": "100.64.0.5"},
            "SSHTests": [],
            "nodeAttrs": [], "postures": {}, "disableIPv4": false,
            "randomizeClientPort": true, "OneCGNATRoute": "", "derpMap": {},
            "autoApprovers": {}, "ipsets": {},
            "attrConfig": {"custom:tier": {"type": "string"}}, "externalTailnets": {},
        }))
        .expect("valid policy");
        assert_eq!(policy.groups["group:eng"], vec!["a@example.com"]);
        assert_eq!(policy.acls.len(), 1);
        assert_eq!(policy.hosts["db"], "100.64.0.5");
    }

    /// The pre-`src`/`dst` spellings, which Tailscale still accepts and its Go client still
    /// sends (`ACLEntry.Users`/`Ports`, `ACLTest.User`/`Allow`).
    #[test]
    fn accepts_legacy_users_ports_and_test_user_allow() {
        let policy = parse_policy(&json!({
            "acls": [{"action": "accept", "users": ["a@example.com"], "ports": ["tag:web:443"]}],
            "tests": [{"user": "a@example.com", "allow": ["tag:web:443"], "deny": ["tag:web:22"]}],
        }))
        .expect("legacy spellings are valid");
        assert_eq!(policy.acls[0].src, vec!["a@example.com"]);
        assert_eq!(policy.acls[0].dst[0].host, "tag:web");
        assert_eq!(policy.tests[0].src, "a@example.com");
        assert_eq!(policy.tests[0].accept[0].text, "tag:web:443");
        assert!(err(
            json!({"acls": [{"action": "accept", "src": ["*"], "users": ["*"], "dst": ["*:*"]}]})
        )
        .contains("not both"));
        assert!(err(json!({"tests": [{"src": "a@b.c", "user": "a@b.c"}]})).contains("not both"));
    }

    #[test]
    fn rejects_structural_errors() {
        assert!(err(json!([])).contains("top level"));
        assert!(err(json!({"bogus": 1})).contains("unknown top-level field \"bogus\""));
        assert!(err(json!({"acls": [], "ACLs": []})).contains("both"));
        assert!(err(json!({"groups": {"eng": []}})).contains("must start with \"group:\""));
        assert!(err(json!({"groups": {"group:eng": [1]}})).contains("not a string"));
        assert!(err(json!({"groups": {"group:a": ["group:b"]}})).contains("cannot contain"));
        assert!(err(json!({"acls": [{"src": ["*"], "dst": ["*:*"]}]})).contains("\"action\""));
        assert!(err(json!({"acls": [{"action": "accept", "dst": ["*:*"]}]})).contains("\"src\""));
        assert!(err(json!({"acls": [{"action": "accept", "src": ["*"]}]})).contains("\"dst\""));
        assert!(
            err(json!({"acls": [{"action": "accept", "src": ["*"], "dst": ["host"]}]}))
                .contains("host:ports")
        );
        assert!(err(json!({"grants": [{"dst": ["*"], "ip": ["*"]}]})).contains("\"src\""));
        assert!(err(json!({"grants": [{"src": ["*"], "ip": ["*"]}]})).contains("\"dst\""));
        assert!(
            err(json!({"grants": [{"src": ["*"], "dst": ["*"]}]})).contains("\"ip\" or \"app\"")
        );
        assert!(err(
            json!({"ssh": [{"action": "accept", "src": ["*"], "dst": ["*"], "users": ["root"]}]})
        )
        .contains("not allowed"));
        assert!(err(
            json!({"acls": [{"action": "accept", "src": ["group:nope"], "dst": ["*:*"]}]})
        )
        .contains("group \"group:nope\" is not defined"));
        assert!(
            err(json!({"tests": [{"src": "a@b.c", "accept": ["tag:x:*"]}]}))
                .contains("single port")
        );
    }

    #[test]
    fn scim_groups_need_no_definition() {
        parse_policy(&json!({
            "grants": [{"src": ["group:eng@example.com"], "dst": ["*"], "ip": ["*"]}]
        }))
        .expect("SCIM group references are allowed");
    }

    #[test]
    fn ports_parse() {
        assert_eq!(parse_ports("*"), Ok(PortSet::Any));
        let set = parse_ports("22,80-90").expect("valid ports");
        assert!(set.contains(22) && set.contains(85) && !set.contains(91));
        assert!(parse_ports("90-80").is_err());
        assert!(parse_ports("http").is_err());
        let hp = parse_host_ports("tag:web:443").expect("valid dst");
        assert_eq!(hp.host, "tag:web");
    }
}
