//! `kubectl tailkeeper`: what people run to ask for access, decide on requests and see grants.
//! Pure functions turn arguments and objects into AccessGrants, patches and text ([`request`],
//! [`decide`], [`show`]); [`session`] holds the few calls to the API server they need. The
//! plugin never judges for the cluster: who may request, approve or deny is the admission
//! policies' word (and the operator's), quoted to the user when they refuse. Reading who holds
//! what is shared with `tailkeeper access` in [`crate::access`].

pub mod decide;
mod error;
pub mod request;
pub mod session;
pub mod show;

pub use error::Error;
pub use session::{Identity, Session};
