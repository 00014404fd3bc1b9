//! The namespace's CA: every driver working in a namespace issues its workers'
//! certificates from the same CA, kept in the Secret `kt-ca`, so that one driver can call
//! the detached actors another started (rule X2 holds: only certificates from this CA are
//! accepted). Reading it needs `get` on that Secret: the RBAC in `deploy/rbac.yaml` grants
//! it to kt's service account only.

use std::collections::BTreeMap;

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kt_core::Error;
use kt_transport::wire::tls::ClusterCa;
use kube::api::PostParams;
use kube::{Api, Client};

use crate::manifest::{LABEL_MANAGED_BY, MANAGED_BY};

/// The Secret holding the namespace's CA.
pub const CA_SECRET: &str = "kt-ca";
/// Its certificate (DER).
const CERT_KEY: &str = "ca.der";
/// Its private key (PKCS#8 PEM).
const KEY_KEY: &str = "ca.key";
/// The CA certificate's common name.
const COMMON_NAME: &str = "kt cluster CA";

fn unavailable(message: String) -> Error {
    Error::Unavailable {
        target: "the Kubernetes API server".into(),
        message,
    }
}

/// Loads the namespace's CA, creating it if this is the first driver here.
pub(crate) async fn namespace_ca(client: &Client, namespace: &str) -> kt_core::Result<ClusterCa> {
    let secrets: Api<Secret> = Api::namespaced(client.clone(), namespace);
    for _ in 0..2 {
        match secrets.get_opt(CA_SECRET).await {
            Ok(Some(secret)) => return from_secret(&secret),
            Ok(None) => {}
            Err(error) => return Err(unavailable(format!("reading Secret {CA_SECRET}: {error}"))),
        }
        let ca = ClusterCa::generate_named(COMMON_NAME)?;
        let (cert, key) = ca.to_files();
        let secret = Secret {
            metadata: ObjectMeta {
                name: Some(CA_SECRET.into()),
                namespace: Some(namespace.into()),
                labels: Some(BTreeMap::from([(
                    LABEL_MANAGED_BY.into(),
                    MANAGED_BY.into(),
                )])),
                ..ObjectMeta::default()
            },
            type_: Some("Opaque".into()),
            immutable: Some(true),
            data: Some(BTreeMap::from([
                (CERT_KEY.into(), ByteString(cert)),
                (KEY_KEY.into(), ByteString(key.into_bytes())),
            ])),
            ..Secret::default()
        };
        match secrets.create(&PostParams::default(), &secret).await {
            Ok(_) => return Ok(ca),
            // Another driver created it first: use theirs.
            Err(kube::Error::Api(status)) if status.code == 409 => continue,
            Err(error) => {
                return Err(unavailable(format!("creating Secret {CA_SECRET}: {error}")));
            }
        }
    }
    Err(unavailable(format!(
        "Secret {CA_SECRET} could neither be read nor created"
    )))
}

fn from_secret(secret: &Secret) -> kt_core::Result<ClusterCa> {
    let data = secret.data.as_ref();
    let field = |key: &str| {
        data.and_then(|d| d.get(key))
            .map(|b| b.0.clone())
            .ok_or_else(|| {
                unavailable(format!(
                    "Secret {CA_SECRET} has no '{key}': delete it and let kt make a new one"
                ))
            })
    };
    let cert = field(CERT_KEY)?;
    let key = String::from_utf8(field(KEY_KEY)?)
        .map_err(|_| unavailable(format!("Secret {CA_SECRET}: '{KEY_KEY}' is not PEM text")))?;
    Ok(ClusterCa::from_files(COMMON_NAME, cert, &key)?)
}
