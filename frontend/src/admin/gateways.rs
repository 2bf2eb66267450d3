//! Gateways: MQTT credentials (add, revoke) and certificates for the TLS
//! listener, downloaded as the three files a gateway installs.

use leptos::prelude::*;
use trackside_wire::{
    CertificateRequest, GatewayCertificateFiles, GatewayCredentialInfo, NewGateway,
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
        api::gateway_credentials()
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
                        Ok(gateways) if gateways.is_empty() => view! {
                            <p class="muted">"No gateway has credentials yet."</p>
                        }
                        .into_any(),
                        Ok(gateways) => view! {
                            <table class="admin-table" data-testid="gateways-table">
                                <thead>
                                    <tr><th>"Gateway"</th><th>"Added"</th><th>"State"</th><th>"Actions"</th></tr>
                                </thead>
                                <tbody>
                                    {gateways.into_iter().map(|g| row(g, times, revoke, issue)).collect_view()}
                                </tbody>
                            </table>
                        }
                        .into_any(),
                        Err(failure) => problem(failure_text(&failure)).into_any(),
                    }
                })}
            </Suspense>
        </section>
    }
}

fn row(
    gateway: GatewayCredentialInfo,
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
