//! Which topics a gateway may publish and subscribe to, and where an
//! allowed publish goes. Pure, so it is table-tested.
//!
//! A gateway's own topics are:
//! - `trackside/{id}/...`, and `/tenants/{id}/trackside/{id}/...` (the form
//!   the TLS listener required before the front; both are accepted on
//!   every listener);
//! - Sparkplug B `spBv1.0/{group}/{type}/{id}[/{device}]`: the edge node is
//!   the gateway. It may also subscribe to `spBv1.0/STATE/{host}`, the
//!   host applications' state that edge nodes follow.
//!
//! A subscription filter is allowed only if every level up to and
//! including the gateway id is literal: `#`, `+/...` or `trackside/+/...`
//! would reach other gateways.

use super::super::decode::{TENANT_ROOT, TOPIC_ROOT};

pub const SPARKPLUG_ROOT: &str = "spBv1.0";

/// Where an allowed publish goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    /// Straight to the ingest pipeline; acknowledged once durable.
    Ingest,
    /// To the embedded broker: the status topic, retained there for the
    /// ingest link and for subscribers.
    Broker,
}

/// The route of a publish by `gateway` to `topic`, or `None` if the topic
/// is not the gateway's.
pub fn publish(gateway: &str, topic: &str) -> Option<Route> {
    if topic.contains(['+', '#']) || topic.is_empty() {
        return None;
    }
    let levels: Vec<&str> = topic.split('/').collect();
    let own = own_levels(gateway, &levels)?;
    match own {
        Own::Trackside(rest) => match rest {
            [] => None,
            ["status"] => Some(Route::Broker),
            _ => Some(Route::Ingest),
        },
        Own::Sparkplug { kind, .. } => {
            const EDGE_KINDS: [&str; 6] =
                ["NBIRTH", "NDEATH", "NDATA", "DBIRTH", "DDEATH", "DDATA"];
            EDGE_KINDS.contains(&kind).then_some(Route::Ingest)
        }
        Own::SparkplugState => None,
    }
}

/// Whether `gateway` may subscribe to `filter`.
pub fn subscribe(gateway: &str, filter: &str) -> bool {
    let levels: Vec<&str> = filter.split('/').collect();
    match own_levels(gateway, &levels) {
        Some(Own::Trackside(rest)) => !rest.is_empty(),
        Some(Own::Sparkplug { .. }) => true,
        Some(Own::SparkplugState) => true,
        None => false,
    }
}

enum Own<'a> {
    /// The levels after `trackside/{id}`.
    Trackside(&'a [&'a str]),
    Sparkplug {
        kind: &'a str,
    },
    /// `spBv1.0/STATE/{host}`: readable by every edge node.
    SparkplugState,
}

/// Matches the levels against the gateway's own prefixes; every level up
/// to the gateway id must be literal (no wildcard).
fn own_levels<'a>(gateway: &str, levels: &'a [&'a str]) -> Option<Own<'a>> {
    let tenant_root = TENANT_ROOT.trim_matches('/');
    match levels {
        [root, id, rest @ ..] if *root == TOPIC_ROOT && *id == gateway => {
            Some(Own::Trackside(rest))
        }
        ["", tenants, tenant, root, id, rest @ ..]
            if *tenants == tenant_root
                && *tenant == gateway
                && *root == TOPIC_ROOT
                && *id == gateway =>
        {
            Some(Own::Trackside(rest))
        }
        [root, "STATE", host] if *root == SPARKPLUG_ROOT && literal(host) => {
            Some(Own::SparkplugState)
        }
        [root, group, kind, edge, device @ ..]
            if *root == SPARKPLUG_ROOT
                && literal(group)
                && literal(kind)
                && *edge == gateway
                && device.len() <= 1 =>
        {
            Some(Own::Sparkplug { kind })
        }
        _ => None,
    }
}

fn literal(level: &str) -> bool {
    !level.is_empty() && !level.contains(['+', '#'])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_gateway_publishes_only_within_its_own_topics() {
        let cases = [
            ("trackside/gw1/readings", Some(Route::Ingest)),
            ("trackside/gw1/channel/T1/relay_state", Some(Route::Ingest)),
            ("trackside/gw1/senml", Some(Route::Ingest)),
            ("trackside/gw1/status", Some(Route::Broker)),
            ("/tenants/gw1/trackside/gw1/readings", Some(Route::Ingest)),
            ("/tenants/gw1/trackside/gw1/status", Some(Route::Broker)),
            ("spBv1.0/yard/NDATA/gw1", Some(Route::Ingest)),
            ("spBv1.0/yard/DDATA/gw1/rtu4", Some(Route::Ingest)),
            ("spBv1.0/yard/NBIRTH/gw1", Some(Route::Ingest)),
            // Not its own, or not a gateway's to publish.
            ("trackside/gw2/readings", None),
            ("trackside/gw1", None),
            ("/tenants/gw2/trackside/gw1/readings", None),
            ("/tenants/gw1/trackside/gw2/readings", None),
            ("spBv1.0/yard/NDATA/gw2", None),
            ("spBv1.0/yard/NCMD/gw1", None),
            ("spBv1.0/STATE/host1", None),
            ("spBv1.0/yard/DDATA/gw1/rtu4/extra", None),
            ("trackside/gw1/+", None),
            ("elsewhere/gw1/readings", None),
            ("", None),
        ];
        for (topic, expected) in cases {
            assert_eq!(publish("gw1", topic), expected, "{topic}");
        }
    }

    #[test]
    fn a_subscription_must_name_the_gateway_before_any_wildcard() {
        let allowed = [
            "trackside/gw1/#",
            "trackside/gw1/commands",
            "/tenants/gw1/trackside/gw1/#",
            "spBv1.0/yard/NCMD/gw1",
            "spBv1.0/yard/DCMD/gw1/+",
            "spBv1.0/STATE/host1",
        ];
        for filter in allowed {
            assert!(subscribe("gw1", filter), "{filter}");
        }
        let refused = [
            "#",
            "+/gw1/#",
            "trackside/#",
            "trackside/+/readings",
            "trackside/gw2/#",
            "trackside/gw1",
            "/tenants/+/trackside/gw1/#",
            "spBv1.0/#",
            "spBv1.0/+/NCMD/gw1",
            "spBv1.0/yard/NCMD/+",
            "spBv1.0/STATE/#",
            "$SYS/#",
        ];
        for filter in refused {
            assert!(!subscribe("gw1", filter), "{filter}");
        }
    }
}
