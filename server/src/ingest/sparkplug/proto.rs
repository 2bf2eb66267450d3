//! The Sparkplug B payload as prost messages.
//!
//! Source: the payload definition of Eclipse Sparkplug B 3.0, published
//! as `sparkplug_b/sparkplug_b.proto` in Eclipse Tahu
//! (<https://github.com/eclipse/tahu>, package `org.eclipse.tahu.protobuf`,
//! Copyright Cirrus Link Solutions and others, EPL-2.0). The messages
//! below carry that definition's field names, types and numbers for the
//! part of `Payload` and `Payload.Metric` Trackside reads; prost's
//! derive does the protobuf encoding and decoding. What is left out
//! (metric metadata, properties, data sets, templates, extensions) is
//! skipped as unknown fields when decoding, as protobuf requires, and a
//! metric whose value was one of them has no `value` here.
//!
//! Why prost and not a Sparkplug crate: srad (the maintained Rust
//! Sparkplug framework) is an edge-node and host *application* that owns
//! its MQTT connection; Trackside reads Sparkplug from the links it
//! already has (the embedded broker's, an external one's), so it needs the
//! payload codec alone, which is these few derived messages.

/// `Payload`: one Sparkplug B message body.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Payload {
    /// Milliseconds since the Unix epoch, at sending.
    #[prost(uint64, optional, tag = "1")]
    pub timestamp: Option<u64>,
    #[prost(message, repeated, tag = "2")]
    pub metrics: Vec<Metric>,
    /// 0 to 255, one more with every message of the edge node's session.
    #[prost(uint64, optional, tag = "3")]
    pub seq: Option<u64>,
    #[prost(string, optional, tag = "4")]
    pub uuid: Option<String>,
    #[prost(bytes = "vec", optional, tag = "5")]
    pub body: Option<Vec<u8>>,
}

/// `Payload.Metric`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Metric {
    /// Present in births; data messages may carry the alias alone.
    #[prost(string, optional, tag = "1")]
    pub name: Option<String>,
    #[prost(uint64, optional, tag = "2")]
    pub alias: Option<u64>,
    /// Milliseconds since the Unix epoch, when the value was taken.
    #[prost(uint64, optional, tag = "3")]
    pub timestamp: Option<u64>,
    /// One of [`datatype`].
    #[prost(uint32, optional, tag = "4")]
    pub datatype: Option<u32>,
    #[prost(bool, optional, tag = "5")]
    pub is_historical: Option<bool>,
    #[prost(bool, optional, tag = "6")]
    pub is_transient: Option<bool>,
    #[prost(bool, optional, tag = "7")]
    pub is_null: Option<bool>,
    #[prost(oneof = "Value", tags = "10, 11, 12, 13, 14, 15, 16")]
    pub value: Option<Value>,
}

/// `Payload.Metric.value`, the scalar cases.
#[derive(Clone, PartialEq, prost::Oneof)]
pub enum Value {
    #[prost(uint32, tag = "10")]
    IntValue(u32),
    #[prost(uint64, tag = "11")]
    LongValue(u64),
    #[prost(float, tag = "12")]
    FloatValue(f32),
    #[prost(double, tag = "13")]
    DoubleValue(f64),
    #[prost(bool, tag = "14")]
    BooleanValue(bool),
    #[prost(string, tag = "15")]
    StringValue(String),
    #[prost(bytes = "vec", tag = "16")]
    BytesValue(Vec<u8>),
}

impl Value {
    pub fn kind(&self) -> &'static str {
        match self {
            Self::IntValue(_) => "int_value",
            Self::LongValue(_) => "long_value",
            Self::FloatValue(_) => "float_value",
            Self::DoubleValue(_) => "double_value",
            Self::BooleanValue(_) => "boolean_value",
            Self::StringValue(_) => "string_value",
            Self::BytesValue(_) => "bytes_value",
        }
    }
}

/// The data type numbers of the definition's `DataType` list.
pub mod datatype {
    pub const INT8: u32 = 1;
    pub const INT16: u32 = 2;
    pub const INT32: u32 = 3;
    pub const INT64: u32 = 4;
    pub const UINT8: u32 = 5;
    pub const UINT16: u32 = 6;
    pub const UINT32: u32 = 7;
    pub const UINT64: u32 = 8;
    pub const FLOAT: u32 = 9;
    pub const DOUBLE: u32 = 10;
    pub const BOOLEAN: u32 = 11;
    pub const STRING: u32 = 12;

    /// The type's name in the specification.
    pub fn name(datatype: u32) -> &'static str {
        const NAMES: [&str; 35] = [
            "Unknown",
            "Int8",
            "Int16",
            "Int32",
            "Int64",
            "UInt8",
            "UInt16",
            "UInt32",
            "UInt64",
            "Float",
            "Double",
            "Boolean",
            "String",
            "DateTime",
            "Text",
            "UUID",
            "DataSet",
            "Bytes",
            "File",
            "Template",
            "PropertySet",
            "PropertySetList",
            "Int8Array",
            "Int16Array",
            "Int32Array",
            "Int64Array",
            "UInt8Array",
            "UInt16Array",
            "UInt32Array",
            "UInt64Array",
            "FloatArray",
            "DoubleArray",
            "BooleanArray",
            "StringArray",
            "DateTimeArray",
        ];
        NAMES.get(datatype as usize).copied().unwrap_or("unknown")
    }

    /// The types Trackside stores as a reading: numbers, and booleans as
    /// 0 and 1.
    pub fn is_number(datatype: u32) -> bool {
        (INT8..=BOOLEAN).contains(&datatype)
    }
}

/// The value of `metric` as a number, read the way its birth declared
/// (`datatype`): signed integers of 8 to 32 bits travel as the low bits
/// of `int_value`, 64-bit ones as `long_value`.
pub fn number(datatype: u32, value: &Value) -> Result<f64, String> {
    use datatype::*;
    let number = match (datatype, value) {
        (INT8, Value::IntValue(v)) => f64::from(*v as u8 as i8),
        (INT16, Value::IntValue(v)) => f64::from(*v as u16 as i16),
        (INT32, Value::IntValue(v)) => f64::from(*v as i32),
        (UINT8 | UINT16 | UINT32, Value::IntValue(v)) => f64::from(*v),
        (INT64, Value::LongValue(v)) => *v as i64 as f64,
        (UINT32 | UINT64, Value::LongValue(v)) => *v as f64,
        (FLOAT, Value::FloatValue(v)) => f64::from(*v),
        (DOUBLE, Value::DoubleValue(v)) => *v,
        (BOOLEAN, Value::BooleanValue(v)) => f64::from(u8::from(*v)),
        (datatype, value) => {
            return Err(format!(
                "declared {} at birth, but the value is a {}",
                name(datatype),
                value.kind()
            ));
        }
    };
    if number.is_finite() {
        Ok(number)
    } else {
        Err("value must be a finite number".into())
    }
}

/// `NCMD` `Node Control/Rebirth = true`: asks an edge node to publish its
/// births again.
pub fn rebirth_request(now_ms: u64) -> Payload {
    Payload {
        timestamp: Some(now_ms),
        metrics: vec![Metric {
            name: Some(REBIRTH_METRIC.to_owned()),
            timestamp: Some(now_ms),
            datatype: Some(datatype::BOOLEAN),
            value: Some(Value::BooleanValue(true)),
            ..Metric::default()
        }],
        ..Payload::default()
    }
}

pub const REBIRTH_METRIC: &str = "Node Control/Rebirth";
/// The birth/death sequence metric of NBIRTH and NDEATH.
pub const BD_SEQ_METRIC: &str = "bdSeq";
