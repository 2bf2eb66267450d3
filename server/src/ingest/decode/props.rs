//! Property tests: no input panics a decoder, and what a gateway encodes
//! decodes to exactly the readings it meant.

use chrono::{DateTime, TimeDelta, Utc};
use proptest::prelude::*;

use super::{DecodeContext, decode};

fn cx() -> DecodeContext {
    DecodeContext::new(
        DateTime::parse_from_rfc3339("2026-11-28T10:00:00Z")
            .unwrap()
            .with_timezone(&Utc),
        TimeDelta::hours(1),
    )
}

const TOPICS: &[&str] = &[
    "trackside/gw/readings",
    "trackside/gw/senml",
    "trackside/gw/status",
    "trackside/gw/channel/T1/relay_voltage",
    "trackside/gw/other",
];

/// A reading a gateway might send: a valid channel, a stamp between 2001
/// and the receive time, any finite value.
fn reading() -> impl Strategy<Value = (String, i64, f64)> {
    (
        "[A-Z][0-9]{1,4}",
        prop::sample::select(vec![
            "relay_state",
            "relay_voltage",
            "feed_current",
            "x.y-z_1",
        ]),
        978_307_200_000i64..1_795_860_000_000,
        prop::num::f64::NORMAL | prop::num::f64::ZERO,
    )
        .prop_map(|(circuit, parameter, ts, value)| (format!("{circuit}/{parameter}"), ts, value))
}

proptest! {
    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..512), topic in 0..TOPICS.len()) {
        let decoded = decode(TOPICS[topic], &bytes, &cx());
        // Whatever comes in is used or kept with a reason; only an empty
        // batch or pack yields nothing at all.
        let nothing = decoded.readings.is_empty() && decoded.rejections.is_empty() && decoded.status.is_none();
        prop_assert!(!nothing || topic <= 1);
    }

    #[test]
    fn arbitrary_json_never_panics(text in r#"[\[\]{}",:0-9a-z. -]{0,200}"#, topic in 0..2usize) {
        let _ = decode(TOPICS[topic], text.as_bytes(), &cx());
    }

    #[test]
    fn json_batches_round_trip(readings in prop::collection::vec(reading(), 1..50)) {
        let payload = serde_json::json!({
            "readings": readings.iter().map(|(channel, ts, value)| serde_json::json!({"channel": channel, "ts": ts, "value": value})).collect::<Vec<_>>()
        }).to_string();
        let decoded = decode("trackside/gw/readings", payload.as_bytes(), &cx());
        prop_assert!(decoded.rejections.is_empty(), "{:?}", decoded.rejections);
        let got: Vec<(String, i64, f64)> = decoded.readings.iter().map(|r| (r.channel.to_string(), r.ts.timestamp_millis(), r.value)).collect();
        prop_assert_eq!(got, readings);
    }

    #[test]
    fn senml_packs_round_trip(readings in prop::collection::vec(reading(), 1..50)) {
        let pack: Vec<serde_json::Value> = readings.iter().map(|(channel, ts, value)| {
            serde_json::json!({"n": channel, "t": *ts as f64 / 1000.0, "v": value})
        }).collect();
        let payload = serde_json::to_vec(&pack).unwrap();
        let decoded = decode("trackside/gw/senml", &payload, &cx());
        prop_assert!(decoded.rejections.is_empty(), "{:?}", decoded.rejections);
        let got: Vec<(String, i64, f64)> = decoded.readings.iter().map(|r| (r.channel.to_string(), r.ts.timestamp_millis(), r.value)).collect();
        prop_assert_eq!(got, readings);
    }

    #[test]
    fn bare_numbers_round_trip(value in prop::num::f64::NORMAL | prop::num::f64::ZERO) {
        let decoded = decode("trackside/gw/channel/T1/relay_voltage", value.to_string().as_bytes(), &cx());
        prop_assert_eq!(decoded.readings.len(), 1);
        prop_assert_eq!(decoded.readings[0].value, value);
    }
}
