//! Trackside's integration tests, one binary: every test talks to a real
//! PostgreSQL, a real MQTT client over TCP, real HTTP and WebSocket clients,
//! and (in `browser`) a real headless Chromium.

mod access;
mod admin_page;
mod alarm_page;
mod alarms;
mod auth;
mod browser;
mod diagram_page;
mod exception_link_page;
mod exceptions;
mod export;
mod export_page;
mod external;
mod flood;
mod flood_page;
mod forecast;
mod forecast_page;
mod front;
mod gateway_trust;
mod grafana;
mod harness;
mod health;
mod history;
mod history_page;
mod http;
mod ingest;
mod live;
mod maintenance_page;
mod notify;
mod openapi;
mod outage;
mod reconnect;
mod rollup;
mod scale;
mod settings_page;
mod shelving;
mod shelving_page;
mod shutdown;
mod sparkplug;
mod spool;
mod timescale;
mod yard;
