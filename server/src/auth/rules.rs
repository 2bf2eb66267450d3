//! Who may call what: one rule per route and per WebSocket message.
//!
//! The guard ([`super::guard`]) looks every request up here by its method
//! and its route's path pattern; a route without a rule is refused to
//! everyone, and the integration test of every route against every role
//! reads the routes from the router itself, so a route added without a
//! line here fails that test. Adding a route's rule is one line in
//! [`RULES`].

use axum::http::Method;
use trackside_wire::{ClientMessage, Role};

/// What a request needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Need {
    /// Anyone, signed in or not: health probes, the sign-in itself.
    Public,
    /// Any signed-in user or API token, even one whose password must be
    /// changed first: who am I, sign out, change my password.
    SignedIn,
    /// At least this role.
    Role(Role),
}

#[derive(Debug)]
pub struct Rule {
    pub method: &'static str,
    /// The route's pattern as the router spells it (`/api/exceptions/{id}`).
    pub path: &'static str,
    pub need: Need,
}

const fn rule(method: &'static str, path: &'static str, need: Need) -> Rule {
    Rule { method, path, need }
}

const PUBLIC: Need = Need::Public;
const SIGNED_IN: Need = Need::SignedIn;
const METRICS: Need = Need::Role(Role::Metrics);
const VIEWER: Need = Need::Role(Role::Viewer);
const OPERATOR: Need = Need::Role(Role::Operator);
const ADMIN: Need = Need::Role(Role::Admin);

/// Every route of the HTTP API. Reads are for viewers, operator actions for
/// operators, configuration, users, gateways, tokens and the audit trail
/// for admins (docs/security.md has the table).
pub const RULES: &[Rule] = &[
    // Probes and the sign-in (the app's files are served to anyone: they
    // hold no data).
    rule("GET", "/healthz", PUBLIC),
    rule("GET", "/readyz", PUBLIC),
    rule("POST", "/api/session", PUBLIC),
    rule("POST", "/api/session/link", PUBLIC),
    // The API's description holds no data, and integrators' tools fetch it
    // before they have a token.
    rule("GET", "/api/openapi.json", PUBLIC),
    // Unknown API paths answer 400 with where the API is described.
    rule("GET", "/api/{*rest}", PUBLIC),
    // The signed-in user.
    rule("GET", "/api/me", SIGNED_IN),
    rule("DELETE", "/api/session", SIGNED_IN),
    rule("POST", "/api/me/password", SIGNED_IN),
    // What reaches me by e-mail: anyone who may read alarms.
    rule("GET", "/api/me/notifications", VIEWER),
    rule("PUT", "/api/me/notifications", VIEWER),
    // A Prometheus scrape, with a `metrics` token or any role's.
    rule("GET", "/metrics", METRICS),
    // Reads.
    rule("GET", "/api/yard", VIEWER),
    rule("GET", "/api/channels", VIEWER),
    rule("GET", "/api/gateways", VIEWER),
    rule("GET", "/ws", VIEWER),
    rule("GET", "/api/exceptions", VIEWER),
    rule("GET", "/api/exceptions/{id}", VIEWER),
    rule("GET", "/api/exceptions/mix", VIEWER),
    rule("GET", "/api/rules", VIEWER),
    rule("GET", "/api/history", VIEWER),
    rule("GET", "/api/export.csv", VIEWER),
    rule("GET", "/api/forecast", VIEWER),
    rule("GET", "/api/forecast/models", VIEWER),
    rule("GET", "/api/forecast/jobs/{id}", VIEWER),
    rule("GET", "/api/layout", VIEWER),
    rule("GET", "/api/layout/source", VIEWER),
    rule("GET", "/api/replay", VIEWER),
    rule("GET", "/api/movements", VIEWER),
    rule("GET", "/api/maintenance", VIEWER),
    rule("GET", "/api/occupations", VIEWER),
    rule("GET", "/api/occupations.csv", VIEWER),
    rule("GET", "/api/health", VIEWER),
    rule("GET", "/api/health/{circuit}", VIEWER),
    rule("GET", "/api/shelves", VIEWER),
    rule("GET", "/api/floods", VIEWER),
    // Operator actions.
    rule("POST", "/api/exceptions/{id}/ack", OPERATOR),
    rule("POST", "/api/maintenance", OPERATOR),
    rule("POST", "/api/maintenance/{id}/end", OPERATOR),
    rule("POST", "/api/shelves", OPERATOR),
    rule("POST", "/api/shelves/{id}/end", OPERATOR),
    rule("POST", "/api/floods/{id}/ack", OPERATOR),
    // Administration.
    rule("POST", "/api/forecast/train", ADMIN),
    rule("PUT", "/api/layout", ADMIN),
    rule("GET", "/api/users", ADMIN),
    rule("POST", "/api/users", ADMIN),
    rule("PATCH", "/api/users/{name}", ADMIN),
    rule("GET", "/api/users/{name}/notifications", ADMIN),
    rule("PUT", "/api/users/{name}/notifications", ADMIN),
    rule("GET", "/api/tokens", ADMIN),
    rule("POST", "/api/tokens", ADMIN),
    rule("DELETE", "/api/tokens/{id}", ADMIN),
    rule("GET", "/api/gateway-credentials", ADMIN),
    rule("POST", "/api/gateway-credentials", ADMIN),
    rule("DELETE", "/api/gateway-credentials/{id}", ADMIN),
    rule("POST", "/api/gateway-credentials/{id}/certificate", ADMIN),
    rule("PUT", "/api/channels/{circuit}/{parameter}/gateway", ADMIN),
    rule("GET", "/api/audit", ADMIN),
    rule("GET", "/api/audit.csv", ADMIN),
];

/// The rule of a route; `HEAD` follows `GET`, as the router does.
pub fn rule_for(method: &Method, path: &str) -> Option<&'static Rule> {
    let method = if method == Method::HEAD {
        "GET"
    } else {
        method.as_str()
    };
    RULES
        .iter()
        .find(|rule| rule.method == method && rule.path == path)
}

/// The methods the rules allow on a path (for a 405's `Allow`).
pub fn methods_of(path: &str) -> Vec<&'static str> {
    RULES
        .iter()
        .filter(|rule| rule.path == path)
        .map(|rule| rule.method)
        .collect()
}

/// What each frame a client sends on `/ws` needs. A match, so a new kind of
/// client message does not compile until it has a rule.
pub fn ws_rule(message: &ClientMessage) -> Need {
    match message {
        ClientMessage::Subscribe { .. } => VIEWER,
    }
}

/// Whether `role` satisfies `need` (for a signed-in principal).
pub fn allows(need: Need, role: Role) -> bool {
    match need {
        Need::Public | Need::SignedIn => true,
        Need::Role(needed) => role >= needed,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_route_has_one_rule() {
        for (i, a) in RULES.iter().enumerate() {
            for b in &RULES[i + 1..] {
                assert!(
                    !(a.method == b.method && a.path == b.path),
                    "two rules for {} {}",
                    a.method,
                    a.path
                );
            }
        }
    }

    #[test]
    fn roles_include_the_ones_below() {
        let check =
            |need, role, expected| assert_eq!(allows(need, role), expected, "{need:?} {role:?}");
        check(VIEWER, Role::Metrics, false);
        check(VIEWER, Role::Viewer, true);
        check(VIEWER, Role::Admin, true);
        check(OPERATOR, Role::Viewer, false);
        check(OPERATOR, Role::Operator, true);
        check(ADMIN, Role::Operator, false);
        check(METRICS, Role::Metrics, true);
        check(SIGNED_IN, Role::Metrics, true);
        assert_eq!(
            rule_for(&Method::HEAD, "/api/yard").map(|r| r.need),
            Some(VIEWER)
        );
        assert!(rule_for(&Method::PUT, "/api/yard").is_none());
    }
}
