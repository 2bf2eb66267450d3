//! Gateways: MQTT credentials (add, revoke) and certificates for the TLS
//! listener, downloaded as the three files a gateway installs; each
//! gateway's clock against the server's; and giving a channel to another
//! gateway.

use leptos::prelude::*;
use std::collections::HashMap;

use trackside_wire::{
    CertificateRequest, ChannelOwner, GatewayCertificateFiles, GatewayCredentialInfo, NewGateway,
};

use super::{Times, failure_text, problem, secret};
use crate::api;
use crate::download::save_text;
use crate::fields::{DaysField, TextField};

/// Days a certificate is valid unless the admin says otherwise: what
/// `trackside gateway cert` issues.
const DEFAULT_DAYS: u32 = 825;

#[component]
pub fn GatewaysTab(times: Times) -> impl IntoView {
    let reload = RwSignal::new(0u32);
    let list = LocalResource::new(move || {
        reload.track();
        async move {
            let credentials = api::gateway_credentials().await?;
            // The clocks are a courtesy: the list stands without them.
            let clocks: HashMap<String, Option<i64>> = api::gateways()
                .await
                .map(|all| all.into_iter().map(|g| (g.id, g.clock_offset_ms)).collect())
                .unwrap_or_default();
            Ok::<_, api::ApiFailure>((credentials, clocks))
        }
    });
    let error = RwSignal::new(None::<String>);
    let issued = RwSignal::new(None::<(String, String)>);
    let certificate = RwSignal::new(None::<GatewayCertificateFiles>);
    let id = RwSignal::new(String::new());
    let days = RwSignal::new(DEFAULT_DAYS);
    let add = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        let request = NewGateway {
            id: id.get_untracked().trim().to_owned(),
            password: None,
        };
        if request.id.is_empty() {
            error.set(Some("Enter the gateway's id, as in yard-gw07.".into()));
            return;
        }
        error.set(None);
        issued.set(None);
        leptos::task::spawn_local(async move {
            match api::add_gateway(&request).await {
                Ok(answer) => {
                    id.set(String::new());
                    issued.set(Some((answer.id, answer.password)));
                    reload.update(|n| *n += 1);
                }
                Err(failure) => error.set(Some(failure_text(&failure))),
            }
        });
    };
    let revoke = move |gateway: String| {
        error.set(None);
        leptos::task::spawn_local(async move {
            if let Err(failure) = api::revoke_gateway(&gateway).await {
                error.set(Some(failure_text(&failure)));
            }
            reload.update(|n| *n += 1);
        });
    };
    let issue = move |gateway: String| {
        error.set(None);
        certificate.set(None);
        let request = CertificateRequest {
            days: days.get_untracked(),
        };
        leptos::task::spawn_local(async move {
            match api::gateway_certificate(&gateway, &request).await {
                Ok(files) => certificate.set(Some(files)),
                Err(failure) => error.set(Some(failure_text(&failure))),
            }
        });
    };
    view! {
        <section class="admin-section" data-testid="gateways-tab">
            <h2>"Gateways"</h2>
            <p class="muted">
                "A gateway connects with its id as client id and username, and its password. \
                 On the TLS listener (port 8883) it also shows its certificate, which lets it \
                 publish under its own id only. Revoking the password shuts it out at its next connect."
            </p>
            <form class="admin-form" on:submit=add>
                <TextField
                    label="Gateway id".into()
                    value=id
                    testid="new-gateway-id"
                    placeholder="yard-gw07"
                    maxlength=64
                />
                <button type="submit" class="primary" data-testid="add-gateway">"Add gateway"</button>
                <DaysField label="Certificates valid for (days)" value=days max=3650 />
            </form>
            {move || issued.get().map(|(gateway, password)| secret(
                format!("MQTT password for {gateway}"),
                password,
                "Configure it on the gateway now: it is stored only as a hash and shown this once.",
            ))}
            {move || certificate.get().map(certificate_view)}
            {move || error.get().map(problem)}
            <Suspense fallback=|| view! { <p class="muted">"Loading gateways…"</p> }>
                {move || Suspend::new(async move {
                    match list.await {
                        Ok((gateways, _)) if gateways.is_empty() => view! {
                            <p class="muted">"No gateway has credentials yet."</p>
                        }
                        .into_any(),
                        Ok((gateways, clocks)) => view! {
                            <table class="admin-table" data-testid="gateways-table">
                                <thead>
                                    <tr>
                                        <th>"Gateway"</th><th>"Added"</th><th>"State"</th>
                                        <th title="The gateway's clock against the server's, from the times it stamps on its readings">"Clock"</th>
                                        <th>"Actions"</th>
                                    </tr>
                                </thead>
                                <tbody>
                                    {gateways.into_iter().map(|g| {
                                        let clock = clocks.get(&g.id).copied().flatten();
                                        row(g, clock, times, revoke, issue)
                                    }).collect_view()}
                                </tbody>
                            </table>
                        }
                        .into_any(),
                        Err(failure) => problem(failure_text(&failure)).into_any(),
                    }
                })}
            </Suspense>
            <ReassignChannel />
        </section>
    }
}

/// Past this a gateway's clock is shown as a problem (the default
/// `gateway-clock` rule's limit).
const CLOCK_WARN_MS: i64 = 5_000;

/// `+7.0 s ahead`, `0.3 s behind`, `in step`.
pub fn clock_text(offset_ms: i64) -> String {
    let seconds = offset_ms.unsigned_abs() as f64 / 1000.0;
    if offset_ms.unsigned_abs() < 100 {
        "in step".to_owned()
    } else if offset_ms > 0 {
        format!("{seconds:.1} s ahead")
    } else {
        format!("{seconds:.1} s behind")
    }
}

fn row(
    gateway: GatewayCredentialInfo,
    clock: Option<i64>,
    times: Times,
    revoke: impl Fn(String) + Copy + 'static,
    issue: impl Fn(String) + Copy + 'static,
) -> impl IntoView {
    let (for_revoke, for_issue) = (gateway.id.clone(), gateway.id.clone());
    let active = gateway.revoked_at.is_none();
    view! {
        <tr data-gateway=gateway.id.clone()>
            <td class="strong">{gateway.id.clone()}</td>
            <td>{times.cell(Some(gateway.created_at))}</td>
            <td>
                {match gateway.revoked_at {
                    None => view! { <span class="state-chip">"active"</span> }.into_any(),
                    Some(at) => view! {
                        <span class="state-chip active">"revoked "{times.cell(Some(at))}</span>
                    }
                    .into_any(),
                }}
            </td>
            <td data-testid="gateway-clock">
                {match clock {
                    Some(ms) if ms.abs() > CLOCK_WARN_MS => view! {
                        <span class="state-chip active" title="Check the gateway's time source (NTP)">{clock_text(ms)}</span>
                    }
                    .into_any(),
                    Some(ms) => view! { <span>{clock_text(ms)}</span> }.into_any(),
                    None => view! { <span class="muted" title="No timestamped reading since the server started">"—"</span> }.into_any(),
                }}
            </td>
            <td class="actions">
                <button class="secondary" data-testid="issue-certificate" on:click=move |_| issue(for_issue.clone())>
                    "Issue certificate"
                </button>
                {active.then(|| view! {
                    <button class="secondary" on:click=move |_| revoke(for_revoke.clone())>"Revoke"</button>
                })}
            </td>
        </tr>
    }
}

fn certificate_view(files: GatewayCertificateFiles) -> impl IntoView {
    let id = files.id.clone();
    let download = move |name: String, text: String| {
        move |_| {
            let _ = save_text(&text, &name, "application/x-pem-file");
        }
    };
    view! {
        <div class="secret" role="status" data-testid="certificate">
            <p class="secret-title">
                {format!("Certificate for {id}, valid {} days", files.days)}
            </p>
            <p class="secret-advice">
                "Download the three files now and install them on the gateway: the private key is \
                 not kept on the server and cannot be downloaded again."
            </p>
            <div class="modal-actions">
                <button class="primary" on:click=download(format!("{id}.crt"), files.cert_pem.clone())>
                    {format!("{id}.crt")}
                </button>
                <button class="primary" on:click=download(format!("{id}.key"), files.key_pem.clone())>
                    {format!("{id}.key")}
                </button>
                <button class="primary" on:click=download("ca.crt".to_owned(), files.ca_pem.clone())>
                    "ca.crt"
                </button>
            </div>
        </div>
    }
}

/// Gives a channel to another gateway: the one that registered it (or its
/// pin) is refused from then on.
#[component]
fn ReassignChannel() -> impl IntoView {
    let channel = RwSignal::new(String::new());
    let gateway = RwSignal::new(String::new());
    let done = RwSignal::new(None::<String>);
    let error = RwSignal::new(None::<String>);
    let submit = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        let name = channel.get_untracked().trim().to_owned();
        let to = gateway.get_untracked().trim().to_owned();
        done.set(None);
        if !name.contains('/') || to.is_empty() {
            error.set(Some(
                "Enter a channel as circuit/parameter (T101/relay_voltage) and the gateway that owns it from now on.".into(),
            ));
            return;
        }
        error.set(None);
        leptos::task::spawn_local(async move {
            match api::reassign_channel(&name, &ChannelOwner { gateway: to }).await {
                Ok(answer) => {
                    channel.set(String::new());
                    gateway.set(String::new());
                    done.set(Some(format!(
                        "{} now belongs to {} (was {}). Readings of it from {} are refused from now on.",
                        answer.channel, answer.gateway, answer.previous, answer.previous
                    )));
                }
                Err(failure) => error.set(Some(failure_text(&failure))),
            }
        });
    };
    view! {
        <h3>"Channel ownership"</h3>
        <p class="muted">
            "A channel belongs to the gateway that first sent it (or the one the configuration pins it to); \
             readings of it from any other gateway are refused. Give it to another gateway when equipment moves."
        </p>
        <form class="admin-form" on:submit=submit data-testid="reassign-form">
            <TextField
                label="Channel".into()
                value=channel
                testid="reassign-channel"
                placeholder="T101/relay_voltage"
                maxlength=200
            />
            <TextField
                label="New gateway".into()
                value=gateway
                testid="reassign-gateway"
                placeholder="yard-gw07"
                maxlength=64
            />
            <button type="submit" class="primary" data-testid="reassign">"Reassign"</button>
        </form>
        {move || done.get().map(|text| view! { <p class="notice" role="status" data-testid="reassigned">{text}</p> })}
        {move || error.get().map(problem)}
    }
}

#[cfg(test)]
mod tests {
    use super::clock_text;

    #[test]
    fn clock_offsets_read_as_words() {
        assert_eq!(clock_text(7_040), "7.0 s ahead");
        assert_eq!(clock_text(-1_260), "1.3 s behind");
        assert_eq!(clock_text(40), "in step");
    }
}
