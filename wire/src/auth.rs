//! Sign-in, users, API tokens and the audit trail.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// What a signed-in person, or an API token, may do. Ordered: each role may
/// do everything the roles before it may.
///
/// `Metrics` is for API tokens only (a Prometheus scrape reads `/metrics`
/// and nothing else); people are viewers, operators or admins.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Metrics,
    /// Reads everything: board, history, exceptions, live feed, exports.
    Viewer,
    /// A viewer who also acknowledges exceptions.
    Operator,
    /// An operator who also trains forecast models and manages users,
    /// gateways, API tokens, and reads the audit trail.
    Admin,
}

impl Role {
    pub const ALL: [Role; 4] = [Role::Metrics, Role::Viewer, Role::Operator, Role::Admin];
    /// The roles a person may hold.
    pub const PEOPLE: [Role; 3] = [Role::Viewer, Role::Operator, Role::Admin];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Metrics => "metrics",
            Role::Viewer => "viewer",
            Role::Operator => "operator",
            Role::Admin => "admin",
        }
    }

    pub fn parse(text: &str) -> Option<Role> {
        Role::ALL.into_iter().find(|r| r.as_str() == text)
    }

    pub fn for_people(self) -> bool {
        self >= Role::Viewer
    }
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `POST /api/session`: sign in.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct SignInRequest {
    pub name: String,
    pub password: String,
}

/// `POST /api/session/link`: sign in with a one-time link's token.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct LinkSignInRequest {
    pub token: String,
}

/// `GET /api/me` (and the answer to a sign-in): who is signed in.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Me {
    pub name: String,
    pub role: Role,
    /// The password was set by someone else; the user must choose their own
    /// (`POST /api/me/password`) before anything else is allowed.
    pub password_change_required: bool,
    /// Unix ms when the session ends at the latest (its absolute lifetime);
    /// `None` for an API token.
    pub session_ends_at: Option<i64>,
    /// Minutes without activity after which the session ends.
    pub idle_timeout_minutes: Option<u64>,
}

/// `POST /api/me/password`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct PasswordChange {
    pub current: String,
    pub new: String,
}

/// A user as `GET /api/users` lists them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct UserInfo {
    pub name: String,
    pub role: Role,
    pub disabled: bool,
    pub password_change_required: bool,
    pub created_at: i64,
    /// The last successful sign-in, if any.
    pub last_sign_in_at: Option<i64>,
    /// Sessions open now.
    pub sessions: i64,
}

/// `POST /api/users`: a new user. Without `password` the server makes a
/// one-time password and answers it once.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct NewUser {
    pub name: String,
    pub role: Role,
    #[serde(default)]
    pub password: Option<String>,
}

/// `PATCH /api/users/{name}`: any of these; each ends the user's sessions.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct UserChange {
    #[serde(default)]
    pub role: Option<Role>,
    #[serde(default)]
    pub disabled: Option<bool>,
    /// `true`: issue a new one-time password (answered once).
    #[serde(default)]
    pub reset_password: bool,
}

/// The answer to creating a user or resetting a password: the one-time
/// password, shown once and never stored in clear.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct IssuedPassword {
    pub user: UserInfo,
    pub password: Option<String>,
}

/// An API token as `GET /api/tokens` lists it (never the secret).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TokenInfo {
    pub id: i64,
    pub user: String,
    pub name: String,
    pub role: Role,
    pub created_at: i64,
    pub expires_at: i64,
    pub revoked_at: Option<i64>,
    pub last_used_at: Option<i64>,
}

/// `POST /api/tokens`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct NewToken {
    /// Whose token: its requests act as this user.
    pub user: String,
    /// What it is for: `prometheus`, `grafana`, `nightly export`.
    pub name: String,
    /// At most the user's role.
    pub role: Role,
    /// Days until it expires (1 to 366).
    pub days: u32,
}

/// The answer to `POST /api/tokens`: the secret, shown once. Send it as
/// `Authorization: Bearer <token>`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct IssuedToken {
    pub token: String,
    pub info: TokenInfo,
}

/// A gateway's MQTT credentials as `GET /api/admin/gateways` lists them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct GatewayCredentialInfo {
    pub id: String,
    pub created_at: i64,
    pub revoked_at: Option<i64>,
}

/// `POST /api/admin/gateways`: a gateway's new password (replacing any old
/// one). Without `password` the server makes one and answers it once.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct NewGateway {
    pub id: String,
    #[serde(default)]
    pub password: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct IssuedGatewayPassword {
    pub id: String,
    pub password: String,
}

/// `POST /api/gateway-credentials/{id}/certificate`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct CertificateRequest {
    /// Days the certificate is valid (1 to 3650).
    pub days: u32,
}

/// A gateway's certificate for the MQTT TLS listener, its private key
/// (answered once, kept nowhere), and the CA certificate that it must trust
/// to verify the server: the three files `trackside gateway cert` writes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct GatewayCertificateFiles {
    pub id: String,
    pub cert_pem: String,
    pub key_pem: String,
    pub ca_pem: String,
    pub days: u32,
}

/// One row of the audit trail.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AuditEntry {
    pub id: i64,
    /// Unix ms.
    pub at: i64,
    /// The user's name; `console` for the `trackside` command; `null` for
    /// the server itself.
    pub actor: Option<String>,
    /// The actor's role at the time.
    pub role: Option<String>,
    /// The client's address (as the server or its trusted proxy saw it).
    pub address: Option<String>,
    /// `signin`, `signin.failed`, `signout`, `exception.acknowledge`,
    /// `forecast.train`, `forecast.model_replaced`, `layout.replace`,
    /// `user.create`, ...
    pub action: String,
    /// What it was done to: a user name, an exception id, a gateway id.
    pub target: Option<String>,
    /// The rest: a comment, a role before and after, a reason.
    pub detail: BTreeMap<String, String>,
}
