//! Tailkeeper: an access-governance operator for Tailscale tailnets.
//!
//! The crate is layered so that the module tree mirrors the architecture:
//! - [`api`]: the custom resource types (what users write and what status says);
//! - [`compliance`], [`duration`], [`entitlements`], [`grants`], [`notifications`],
//!   [`policy_file`] and [`webhook`]: pure logic, no I/O, unit-tested directly;
//! - [`tailscale`]: the one HTTP path to Tailscale;
//! - [`controller`], [`server`], [`telemetry`]: the Kubernetes runtime that wires them together;
//! - [`access`] and [`kubectl`]: the client side, for people: `tailkeeper access` and the
//!   `kubectl tailkeeper` plugin (request, approve, deny, see grants and who holds what).

pub mod access;
pub mod api;
pub mod boundary;
pub mod compliance;
pub mod controller;
pub mod duration;
pub mod entitlements;
pub mod grants;
pub mod kubectl;
pub mod metrics;
pub mod notifications;
pub mod policy_file;
pub mod records;
pub mod reviews;
pub mod server;
pub mod tailscale;
pub mod telemetry;
pub mod webhook;
