//! One module per grant type, each exposing `exchange(cx, client, params)`.

pub mod authorization_code;
