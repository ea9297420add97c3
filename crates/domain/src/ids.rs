//! Identifiers: a short type prefix and a UUIDv7, so ids sort by creation time and an operator can
//! tell a workspace id from a user id at a glance.

use serde::{Deserialize, Serialize};
use std::fmt;

macro_rules! prefixed_id {
    ($(#[$doc:meta])* $name:ident, $prefix:literal) => {
        $(#[$doc])*
        #[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(String);

        impl $name {
            pub const PREFIX: &'static str = $prefix;

            /// A fresh id.
            pub fn generate() -> Self {
                Self(format!("{}{}", $prefix, uuid::Uuid::now_v7().simple()))
            }

            /// Wraps an id read back from storage or typed by an operator. Ids are opaque: any
            /// non-empty string is accepted and simply won't be found if it is wrong.
            pub fn from_string(s: impl Into<String>) -> Self {
                Self(s.into())
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

prefixed_id!(
    /// A workspace (tenant): the unit of isolation.
    WorkspaceId, "ws_"
);
prefixed_id!(
    /// A person who signs in.
    UserId, "usr_"
);
prefixed_id!(
    /// An OAuth client. Generated ids look like `cl_…`; the type also holds ids of clients
    /// registered by other means.
    ClientId, "cl_"
);
prefixed_id!(
    /// A grant: one user's consent for one client in one workspace.
    GrantId, "grt_"
);
prefixed_id!(
    /// A token family: every token descending from one authorization code.
    FamilyId, "fam_"
);
prefixed_id!(
    /// A signing key (`kid` in JWT headers and the JWKS).
    KeyId, "sk_"
);
prefixed_id!(
    /// An API key (the id stays the same across rotations of its secret).
    ApiKeyId, "key_"
);
prefixed_id!(
    /// A named scope bundle of a workspace.
    BundleId, "bnd_"
);
prefixed_id!(
    /// A workload-identity trust policy: which external tokens may be exchanged for service tokens.
    TrustPolicyId, "tp_"
);
prefixed_id!(
    /// A recorded event.
    EventId, "evt_"
);

prefixed_id!(
    /// An audit log entry; stable across redeliveries, so receivers can deduplicate on it.
    AuditEntryId, "aud_"
);

prefixed_id!(
    /// A webhook sink that receives a workspace's audit entries.
    AuditSinkId, "snk_"
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_carry_their_prefix_and_sort_by_time() {
        let a = WorkspaceId::generate();
        let b = WorkspaceId::generate();
        assert!(a.as_str().starts_with("ws_"));
        assert!(a < b);
        assert_ne!(a, b);
    }
}
