//! The compliance core: the people directory and the four critical-system checks.
//!
//! This module is pure. It owns turning a people directory (inline entries and CSV, JSON or YAML
//! files) into a [`Directory`], and judging a tailnet's users against it with [`evaluate`]. It
//! must never do I/O, talk to Kubernetes or Tailscale, read the clock or be async: callers fetch
//! the inputs, this module decides, callers write the results. That keeps every rule here
//! unit-testable with plain data.
//!
//! - [`directory`]: [`Person`], [`Directory`] and parsing directory files.
//! - [`checks`]: the inputs ([`TailscaleUser`], [`RoleRule`], [`Exemption`], [`RoleGrant`]) and
//!   the four checks, whose exact semantics are documented there.

pub mod changes;
pub mod checks;
pub mod directory;
pub mod enforcement;
pub mod limits;

pub use checks::{
    evaluate, CheckName, CheckOutcome, CheckResult, Evaluation, Exemption, Finding, Inputs,
    RoleGrant, RoleRule, TailscaleUser,
};
pub use directory::{
    missing_org_roles, parse_people, with_login_identities, Directory, DirectoryError,
    DirectoryFormat, EmploymentStatus, Person, Place,
};
