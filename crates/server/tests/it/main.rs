//! Integration tests: a real server on 127.0.0.1:0, driven over HTTP, on SQLite and PostgreSQL.

mod api_keys;
mod audit;
mod cli;
mod client_metadata;
mod device_keys;
mod discovery;
mod dpop;
mod federation;
mod flow;
mod flow_errors;
mod gateway;
mod guard;
mod lifecycle;
mod matrix;
mod mcp;
mod multiprocess;
mod par;
mod registration;
mod resources;
mod support;
