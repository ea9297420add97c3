//! Integration tests: a real server on 127.0.0.1:0, driven over HTTP, on SQLite and PostgreSQL.

mod cli;
mod discovery;
mod flow;
mod flow_errors;
mod support;
