//! The tailnet policy file: HuJSON parsing, semantic validation and `tests`/`sshTests`
//! evaluation, as a pure module (no I/O, no simulator state beyond a [`Directory`] of users).
//!
//! The pipeline mirrors what Tailscale does on every write:
//! 1. [`parse_hujson`]: HuJSON (JSON with comments and trailing commas) to a JSON value; syntax
//!    errors read `line N, column M: <reason>`.
//! 2. [`validate::parse_policy`]: structural checks of the known sections into a typed [`Policy`].
//! 3. [`eval::run_tests`]: the policy's own `tests` and `sshTests` are evaluated; any failure
//!    rejects the file with per-test `data`.
//!
//! See [`eval`] for the subset of Tailscale's access semantics the evaluation supports.

pub mod eval;
mod hujson;
pub mod validate;

use serde::Serialize;
use sha2::{Digest, Sha256};

pub use eval::{access_of, run_ssh_tests, run_tests, Directory, DirectoryUser, UserAccess};
pub use validate::{parse_policy, parse_tests, Policy};

/// The file a new tailnet starts with (and an empty POST resets to), modelled on Tailscale's
/// own default: allow everything via grants, SSH into your own devices in check mode.
pub const DEFAULT_POLICY: &str = r#"// Example/default ACLs for unrestricted connections.
{
	// Declare static groups of users. Use autogroups for all users or users with a specific role.
	// "groups": {
	//   "group:example": ["alice@example.com", "bob@example.com"],
	// },

	// Define the tags which can be applied to devices and by which users.
	// "tagOwners": {
	//   "tag:example": ["autogroup:admin"],
	// },

	// Define grants that govern access for users, groups, autogroups, tags,
	// Tailscale IP addresses, and subnet ranges.
	"grants": [
		// Allow all connections.
		// Comment this section out if you want to define specific restrictions.
		{"src": ["*"], "dst": ["*"], "ip": ["*"]},
	],

	// Define users and devices that can use Tailscale SSH.
	"ssh": [
		// Allow all users to SSH into their own devices in check mode.
		// Comment this section out if you want to define specific restrictions.
		{
			"action": "check",
			"src":    ["autogroup:member"],
			"dst":    ["autogroup:self"],
			"users":  ["autogroup:nonroot", "root"],
		},
	],

	// Test access rules every time they're saved.
	// "tests": [
	//   {
	//       "src": "alice@example.com",
	//       "accept": ["tag:example:22"],
	//       "deny": ["100.101.102.103:443"],
	//   },
	// ],
}
"#;

/// The ETag of a stored file: lowercase hex SHA-256 of its exact text (sent quoted).
pub fn etag(text: &str) -> String {
    hex::encode(Sha256::digest(text.as_bytes()))
}

/// One failing test, as Tailscale reports it in the `data` of a 400 answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TestFailure {
    /// The test's `src`.
    pub user: String,
    pub errors: Vec<String>,
}

/// Why a policy file was rejected: `{"message": ..., "data": [...]}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyError {
    pub message: String,
    pub data: Vec<TestFailure>,
}

impl PolicyError {
    fn invalid(message: String) -> Self {
        PolicyError {
            message,
            data: Vec::new(),
        }
    }

    fn tests_failed(data: Vec<TestFailure>) -> Self {
        PolicyError {
            message: "test(s) failed".to_string(),
            data,
        }
    }
}

/// Parse HuJSON into a JSON value; errors read `line N, column M: <reason>`.
///
/// Object keys must be quoted strings (HuJSON, unlike JSON5, has no bare keys) and entries
/// must be separated by commas. Text with no value at all (empty or only comments) is an
/// error too; callers that give an empty body a meaning (reset to default) check for it first.
pub fn parse_hujson(text: &str) -> Result<serde_json::Value, String> {
    hujson::parse(text)
}

/// Parse, validate and run the tests of a whole policy file, as a write does.
///
/// Returns the parsed JSON value on success so callers need not parse twice.
pub fn check(text: &str, directory: &Directory) -> Result<serde_json::Value, PolicyError> {
    let value = parse_hujson(text).map_err(PolicyError::invalid)?;
    let policy = parse_policy(&value).map_err(PolicyError::invalid)?;
    let mut failures = run_tests(&policy, &policy.tests, directory);
    failures.extend(run_ssh_tests(&policy, &policy.ssh_tests, directory));
    if failures.is_empty() {
        Ok(value)
    } else {
        Err(PolicyError::tests_failed(failures))
    }
}

/// Run a bare list of `tests` (the other form `/acl/validate` accepts) against a stored policy.
pub fn check_tests_against(
    policy_text: &str,
    tests: &serde_json::Value,
    directory: &Directory,
) -> Result<(), PolicyError> {
    let value = parse_hujson(policy_text)
        .map_err(|e| PolicyError::invalid(format!("current policy file is invalid: {e}")))?;
    let policy = parse_policy(&value)
        .map_err(|e| PolicyError::invalid(format!("current policy file is invalid: {e}")))?;
    let tests = parse_tests(tests, "tests").map_err(PolicyError::invalid)?;
    let failures = run_tests(&policy, &tests, directory);
    if failures.is_empty() {
        Ok(())
    } else {
        Err(PolicyError::tests_failed(failures))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_policy_is_valid() {
        let value = check(DEFAULT_POLICY, &Directory::default()).expect("default policy valid");
        assert!(value.get("grants").is_some());
    }

    #[test]
    fn etag_is_sha256_hex() {
        assert_eq!(
            etag(""),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }

    #[test]
    fn parse_errors_carry_line_and_column() {
        let err = parse_hujson("{\n  \"acls\": [\n    {\"action\": accept}\n  ]\n}").unwrap_err();
        assert!(err.starts_with("line 3, column "), "{err}");
        let err = parse_hujson("{\"a\": 1,,}").unwrap_err();
        assert!(err.starts_with("line 1, column "), "{err}");
        let err = parse_hujson("// only a comment\n").unwrap_err();
        assert!(err.contains("empty"), "{err}");
    }

    #[test]
    fn hujson_comments_and_trailing_commas_parse() {
        let value = parse_hujson("/* c */ {\"a\": [1, 2,], // x\n}").expect("valid HuJSON");
        assert_eq!(value, serde_json::json!({"a": [1, 2]}));
        // Bare keys are JSON5, not HuJSON.
        assert!(parse_hujson("{a: 1}").is_err());
    }

    #[test]
    fn failing_tests_reject_with_data() {
        let text = r#"{
            "acls": [{"action": "accept", "src": ["alice@example.com"], "dst": ["tag:web:443"]}],
            "tests": [{"src": "bob@example.com", "accept": ["tag:web:443"]}],
        }"#;
        let err = check(text, &Directory::default()).unwrap_err();
        assert_eq!(err.message, "test(s) failed");
        assert_eq!(err.data.len(), 1);
        assert_eq!(err.data[0].user, "bob@example.com");
        assert_eq!(
            err.data[0].errors,
            vec!["address \"tag:web:443\": want: Accept, got: Drop".to_string()]
        );
    }

    #[test]
    fn bare_tests_run_against_stored_policy() {
        let tests = serde_json::json!([{"src": "a@example.com", "deny": ["tag:x:22"]}]);
        let err = check_tests_against(DEFAULT_POLICY, &tests, &Directory::default()).unwrap_err();
        assert_eq!(err.data[0].errors.len(), 1);
    }
}
