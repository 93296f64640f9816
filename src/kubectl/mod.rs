//! `kubectl tailkeeper`: what people run to ask for access, decide on requests, see grants and
//! review access. Pure functions turn arguments and objects into AccessGrants, patches,
//! AccessReviewDecisions and text ([`request`], [`decide`], [`review`], [`show`]); [`session`]
//! holds the few calls to the API server they need. The plugin never judges for the cluster:
//! who may request, approve, deny or decide in a review is the admission policies' word (and
//! the operator's), quoted to the user when they refuse. Reading who holds what is shared with
//! `tailkeeper access` in [`crate::access`], reading a review's items with the operator in
//! [`crate::records`].

pub mod decide;
mod error;
pub mod request;
pub mod review;
pub mod session;
pub mod show;

pub use error::Error;
pub use session::{Identity, Session};
