//! The authorization server metadata (RFC 8414), which is also the OpenID Connect discovery
//! document. Endpoint URLs come from the HTTP layer's single paths module; what we support comes
//! from the code that implements it.

use crate::admin::SUPPORTED_GRANT_TYPES;
use crate::scopes::Catalogue;
use crate::settings::Settings;
use portcullis_proto::metadata::ServerMetadata;

/// Absolute URLs of the endpoints, built by the HTTP layer from its paths module.
pub struct Endpoints {
    pub authorization: String,
    pub token: String,
    pub jwks: String,
    pub userinfo: String,
    pub revocation: String,
    pub introspection: String,
    pub device_authorization: String,
    pub registration: String,
    pub par: String,
}

pub fn metadata(settings: &Settings, catalogue: &Catalogue, e: Endpoints) -> ServerMetadata {
    ServerMetadata {
        issuer: settings.issuer.clone(),
        authorization_endpoint: e.authorization,
        token_endpoint: e.token,
        jwks_uri: e.jwks,
        userinfo_endpoint: e.userinfo,
        revocation_endpoint: e.revocation,
        introspection_endpoint: e.introspection,
        device_authorization_endpoint: e.device_authorization,
        pushed_authorization_request_endpoint: e.par,
        require_pushed_authorization_requests: settings.require_pushed_requests,
        registration_endpoint: (settings.registration.mode
            != crate::oauth::registration::RegistrationMode::Disabled)
            .then_some(e.registration),
        scopes_supported: catalogue.oauth_scopes(),
        response_types_supported: vec!["code"],
        response_modes_supported: vec!["query"],
        grant_types_supported: SUPPORTED_GRANT_TYPES.to_vec(),
        token_endpoint_auth_methods_supported: vec!["client_secret_basic", "client_secret_post", "none"],
        revocation_endpoint_auth_methods_supported: vec!["client_secret_basic", "client_secret_post", "none"],
        introspection_endpoint_auth_methods_supported: vec!["client_secret_basic", "client_secret_post"],
        code_challenge_methods_supported: vec!["S256"],
        authorization_response_iss_parameter_supported: true,
        prompt_values_supported: vec!["none", "login", "consent", "select_account"],
        subject_types_supported: vec!["public"],
        id_token_signing_alg_values_supported: vec!["ES256"],
        claims_supported: vec![
            "sub",
            "iss",
            "aud",
            "exp",
            "iat",
            "auth_time",
            "nonce",
            "azp",
            "at_hash",
            "email",
            "name",
        ],
        request_parameter_supported: false,
        request_uri_parameter_supported: false,
        dpop_signing_alg_values_supported: crate::oauth::dpop::ALGS.to_vec(),
        client_id_metadata_document_supported: settings.client_metadata.enabled,
    }
}
