//! `kt ps`: one row per kt actor pod.

use std::io::Write;

use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ListParams};
use serde::Serialize;

use super::find::{self, actor_selector};
use super::status::{age_seconds, format_age, pod_status, restarts};
use super::{CliError, Output, PsArgs, Target};
use crate::manifest::short_type_name;

/// One row of `kt ps` (and one object of `kt ps -o json`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PsRow {
    /// The pod's namespace.
    pub namespace: String,
    /// The actor's name.
    pub name: String,
    /// The actor's type, short form (`Trainer`).
    #[serde(rename = "type")]
    pub type_short: String,
    /// The actor's full registered type name.
    pub type_name: String,
    /// The session id.
    pub session: String,
    /// The group and rank of a group member.
    pub group: Option<String>,
    /// The member's rank.
    pub rank: Option<usize>,
    /// `owned` or `detached`.
    pub lifetime: Option<String>,
    /// The pod's name.
    pub pod: String,
    /// The node the pod runs on, once scheduled.
    pub node: Option<String>,
    /// The status as `kubectl get pods` shows it (`Running`, `OOMKilled`, `Unschedulable`).
    pub status: String,
    /// Container restarts.
    pub restarts: i32,
    /// Seconds since creation.
    pub age_seconds: Option<i64>,
    /// The AGE column (`5s`, `3m`, `2h`, `4d`).
    pub age: String,
}

fn row(pod: &Pod, now: k8s_openapi::jiff::Timestamp) -> PsRow {
    let type_name = find::type_name(pod).unwrap_or_default().to_string();
    let age_seconds = age_seconds(pod, now);
    let group = find::group_rank(pod);
    PsRow {
        namespace: pod.metadata.namespace.clone().unwrap_or_default(),
        name: find::actor_name(pod).to_string(),
        type_short: short_type_name(&type_name).to_string(),
        type_name,
        session: find::session(pod).to_string(),
        group: group.map(|(g, _)| g.to_string()),
        rank: group.map(|(_, r)| r),
        lifetime: find::lifetime(pod).map(str::to_string),
        pod: find::pod_name(pod).to_string(),
        node: pod.spec.as_ref().and_then(|s| s.node_name.clone()),
        status: pod_status(pod),
        restarts: restarts(pod),
        age: age_seconds.map_or_else(|| "<unknown>".to_string(), format_age),
        age_seconds,
    }
}

/// The rows of `kt ps`, sorted by namespace, session, group, rank and name.
pub async fn ps_rows(target: &Target, args: &PsArgs) -> Result<Vec<PsRow>, CliError> {
    find::check_session(args.session.as_deref())?;
    let pods: Api<Pod> = if args.all_namespaces {
        Api::all(target.client.clone())
    } else {
        Api::namespaced(target.client.clone(), &target.namespace)
    };
    let params = ListParams::default().labels(&actor_selector(args.session.as_deref()));
    let place = if args.all_namespaces {
        format!("every namespace ({})", target.source)
    } else {
        target.place()
    };
    let list = pods
        .list(&params)
        .await
        .map_err(|e| CliError::api("listing kt's actor pods", place, e))?;
    let now = k8s_openapi::jiff::Timestamp::now();
    let mut rows: Vec<PsRow> = list.items.iter().map(|p| row(p, now)).collect();
    rows.sort_by(|a, b| {
        (&a.namespace, &a.session, &a.group, a.rank, &a.name).cmp(&(
            &b.namespace,
            &b.session,
            &b.group,
            b.rank,
            &b.name,
        ))
    });
    Ok(rows)
}

/// `kt ps`: a table (aligned columns, a NAMESPACE column with `-A`) or JSON.
pub async fn ps(
    target: &Target,
    args: &PsArgs,
    out: &mut (dyn Write + Send),
) -> Result<(), CliError> {
    let rows = ps_rows(target, args).await?;
    match args.output {
        Output::Json => {
            let json = serde_json::to_string_pretty(&rows)
                .map_err(|e| CliError::Invalid(format!("cannot encode the rows as JSON: {e}")))?;
            writeln!(out, "{json}")?;
        }
        Output::Table if rows.is_empty() => {
            let place = if args.all_namespaces {
                "any namespace".to_string()
            } else {
                format!("namespace '{}'", target.namespace)
            };
            let session = args
                .session
                .as_deref()
                .map(|s| format!(" of session '{s}'"))
                .unwrap_or_default();
            writeln!(out, "No kt actors{session} in {place}.")?;
        }
        Output::Table => {
            let mut table = Vec::with_capacity(rows.len() + 1);
            let mut header = vec![
                "NAME", "TYPE", "SESSION", "POD", "NODE", "STATUS", "RESTARTS", "AGE",
            ];
            if args.all_namespaces {
                header.insert(0, "NAMESPACE");
            }
            table.push(header.into_iter().map(str::to_string).collect::<Vec<_>>());
            for r in &rows {
                let mut cells = vec![
                    r.name.clone(),
                    r.type_short.clone(),
                    r.session.clone(),
                    r.pod.clone(),
                    r.node.clone().unwrap_or_else(|| "<none>".to_string()),
                    r.status.clone(),
                    r.restarts.to_string(),
                    r.age.clone(),
                ];
                if args.all_namespaces {
                    cells.insert(0, r.namespace.clone());
                }
                table.push(cells);
            }
            write_table(out, &table)?;
        }
    }
    Ok(())
}

/// Left-aligned columns three spaces apart, as kubectl prints them. Actor names may hold
/// spaces, so scripts should read `-o json` rather than split lines.
pub(crate) fn write_table(
    out: &mut (dyn Write + Send),
    table: &[Vec<String>],
) -> std::io::Result<()> {
    let Some((header, rows)) = table.split_first() else {
        return Ok(());
    };
    let mut printed = comfy_table::Table::new();
    // No borders and no wrapping: plain columns, however wide, like kubectl's.
    printed
        .load_style(comfy_table::presets::NOTHING)
        .set_content_arrangement(comfy_table::ContentArrangement::Disabled)
        .set_header(header)
        .add_rows(rows);
    let last = header.len().saturating_sub(1);
    for column in printed.column_iter_mut() {
        // Three spaces after each column but the last; none before any.
        let right = if column.index == last { 0 } else { 3 };
        column.set_padding((0, right));
    }
    // The last column is padded to its width too; kubectl's lines end at their text.
    for line in printed.lines() {
        writeln!(out, "{}", line.trim_end())?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::write_table;

    #[test]
    fn table_is_kubectl_plain_columns() {
        let table: Vec<Vec<String>> = [
            ["NAME", "STATUS", "AGE"],
            ["counter", "Running", "5s"],
            ["a b", "ErrImagePull", "12m"],
        ]
        .iter()
        .map(|row| row.iter().map(|c| c.to_string()).collect())
        .collect();
        let mut out = Vec::new();
        write_table(&mut out, &table).expect("writes");
        assert_eq!(
            String::from_utf8(out).expect("UTF-8"),
            "NAME      STATUS         AGE\n\
             counter   Running        5s\n\
             a b       ErrImagePull   12m\n"
        );
        let mut empty = Vec::new();
        write_table(&mut empty, &[]).expect("writes");
        assert!(empty.is_empty());
    }
}
