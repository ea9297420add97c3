//! The router: every route, built from [`crate::paths`].

pub mod browser;
pub mod meta;
pub mod register;
pub mod token;
