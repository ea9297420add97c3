//! One module per grant type, each exposing `exchange(cx, client, params)` (token exchange
//! takes no client: workload federation needs no client secret).

pub mod authorization_code;
pub mod client_credentials;
pub mod device_code;
pub mod refresh_token;
pub mod token_exchange;
