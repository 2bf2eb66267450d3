//! Property tests: no input panics the Sparkplug decoder or breaks a
//! session, and what a node encodes decodes to exactly the readings it
//! meant, whatever the aliases.

use chrono::{DateTime, TimeDelta};
use proptest::prelude::*;
use prost::Message as _;

use super::proto::{Metric, Payload, Value, datatype};
use super::*;

fn cx() -> DecodeContext {
    DecodeContext::new(
        DateTime::from_timestamp_millis(1_795_860_000_000).unwrap(),
        TimeDelta::hours(1),
    )
}

const TOPICS: &[&str] = &[
    "spBv1.0/g/NBIRTH/gw",
    "spBv1.0/g/NDATA/gw",
    "spBv1.0/g/NDEATH/gw",
    "spBv1.0/g/DBIRTH/gw/T1",
    "spBv1.0/g/DDATA/gw/T1",
    "spBv1.0/g/DDEATH/gw/T1",
];

/// A numeric metric and the number it stands for.
fn value() -> impl Strategy<Value = (u32, Value, f64)> {
    prop_oneof![
        any::<i8>().prop_map(|v| (
            datatype::INT8,
            Value::IntValue(v as i32 as u32),
            f64::from(v)
        )),
        any::<i16>().prop_map(|v| (
            datatype::INT16,
            Value::IntValue(v as u16 as u32),
            f64::from(v)
        )),
        any::<i32>().prop_map(|v| (datatype::INT32, Value::IntValue(v as u32), f64::from(v))),
        any::<u32>().prop_map(|v| (datatype::UINT32, Value::IntValue(v), f64::from(v))),
        any::<i64>().prop_map(|v| (datatype::INT64, Value::LongValue(v as u64), v as f64)),
        (prop::num::f32::NORMAL | prop::num::f32::ZERO).prop_map(|v| (
            datatype::FLOAT,
            Value::FloatValue(v),
            f64::from(v)
        )),
        (prop::num::f64::NORMAL | prop::num::f64::ZERO).prop_map(|v| (
            datatype::DOUBLE,
            Value::DoubleValue(v),
            v
        )),
        any::<bool>().prop_map(|v| (
            datatype::BOOLEAN,
            Value::BooleanValue(v),
            f64::from(u8::from(v))
        )),
    ]
}

proptest! {
    #[test]
    fn arbitrary_bytes_never_panic(
        messages in prop::collection::vec((0..TOPICS.len(), prop::collection::vec(any::<u8>(), 0..256)), 1..8),
    ) {
        let sessions = Sessions::new(SparkplugConfig::default(), Arc::new(Metrics::default()));
        for (topic, bytes) in messages {
            let decoded = sessions.decode(TOPICS[topic], &bytes, &cx(), true);
            for reading in &decoded.readings {
                prop_assert!(reading.value.is_finite());
            }
            for rejection in &decoded.rejections {
                prop_assert!(!rejection.reason.is_empty());
                prop_assert!(!rejection.payload.is_empty() || bytes.is_empty());
            }
        }
    }

    #[test]
    fn births_and_data_decode_to_what_was_meant(
        values in prop::collection::vec((value(), any::<u64>()), 1..20),
        data in prop::collection::vec(value(), 1..20),
        first_seq in 0u64..256,
    ) {
        let sessions = Sessions::new(SparkplugConfig::default(), Arc::new(Metrics::default()));
        // Distinct aliases, any values; the metric's index names its channel.
        let mut aliases: Vec<u64> = values.iter().map(|(_, alias)| *alias).collect();
        aliases.sort_unstable();
        aliases.dedup();
        let metrics: Vec<Metric> = aliases
            .iter()
            .zip(&values)
            .enumerate()
            .map(|(i, (alias, ((datatype, value, _), _)))| Metric {
                name: Some(format!("T{i}/relay_voltage")),
                alias: Some(*alias),
                datatype: Some(*datatype),
                value: Some(value.clone()),
                ..Metric::default()
            })
            .collect();
        let birth = Payload { seq: Some(first_seq), metrics: metrics.clone(), ..Payload::default() };
        let decoded = sessions.decode(TOPICS[0], &birth.encode_to_vec(), &cx(), true);
        prop_assert!(decoded.rejections.is_empty(), "{:?}", decoded.rejections);
        let want: Vec<f64> = aliases.iter().zip(&values).map(|(_, ((_, _, v), _))| *v).collect();
        prop_assert_eq!(decoded.readings.iter().map(|r| r.value).collect::<Vec<_>>(), want);

        // Data by alias, of the type each metric was born with.
        let mut expected = Vec::new();
        let mut sent = Vec::new();
        for (i, (datatype, value, number)) in data.iter().enumerate() {
            let target = i % metrics.len();
            if metrics[target].datatype != Some(*datatype) {
                continue;
            }
            sent.push(Metric { alias: metrics[target].alias, value: Some(value.clone()), ..Metric::default() });
            expected.push((format!("T{target}/relay_voltage"), *number));
        }
        let message = Payload { seq: Some((first_seq + 1) % 256), metrics: sent, ..Payload::default() };
        let decoded = sessions.decode(TOPICS[1], &message.encode_to_vec(), &cx(), true);
        prop_assert!(decoded.rejections.is_empty(), "{:?}", decoded.rejections);
        prop_assert_eq!(
            decoded.readings.iter().map(|r| (r.channel.to_string(), r.value)).collect::<Vec<_>>(),
            expected
        );
    }
}
