//! One module per grant type, each exposing `exchange(cx, client, params)`.

pub mod authorization_code;
pub mod client_credentials;
pub mod device_code;
pub mod refresh_token;
