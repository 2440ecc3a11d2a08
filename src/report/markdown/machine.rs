//! The machines and models the results came from.

use super::*;

pub(super) fn system_table(md: &mut String, inputs: &[Input]) {
    w!(md, "## System\n");
    // One column per distinct machine.
    let mut machines: Vec<(Vec<&str>, &SavedResult)> = Vec::new();
    for i in inputs {
        let h = &i.saved.hardware;
        let same = |o: &Hardware| {
            o.cpu_model == h.cpu_model
                && o.logical_cores == h.logical_cores
                && o.ram_total_bytes == h.ram_total_bytes
                && o.kernel == h.kernel
        };
        match machines.iter_mut().find(|(_, s)| same(&s.hardware)) {
            Some((names, _)) => names.push(&i.name),
            None => machines.push((vec![&i.name], &i.saved)),
        }
    }
    let mut header = vec![String::new()];
    header.extend(machines.iter().map(|(names, _)| {
        if machines.len() == 1 {
            "value".to_string()
        } else {
            names.join(", ")
        }
    }));
    let facts: [Fact<SavedResult>; 11] = [
        ("CPU", |s| {
            s.hardware
                .cpu_model
                .clone()
                .unwrap_or_else(|| "unknown".into())
        }),
        ("Cores", |s| match s.hardware.physical_cores {
            Some(p) => format!("{p} physical, {} logical", s.hardware.logical_cores),
            None => format!("{} logical", s.hardware.logical_cores),
        }),
        ("SIMD (ggml)", |s| s.hardware.cpu_features.join(" ")),
        ("Last-level cache", |s| {
            s.hardware
                .last_level_cache_bytes
                .map_or_else(|| "unknown".into(), bytes)
        }),
        ("RAM", |s| {
            let t = s
                .hardware
                .ram_total_bytes
                .map(bytes)
                .unwrap_or_else(|| "unknown".into());
            match s.hardware.ram_available_bytes {
                Some(a) => format!("{t} ({} available)", bytes(a)),
                None => t,
            }
        }),
        ("Memory read bandwidth", |s| {
            match &s.hardware.memory_bandwidth {
                Some(b) => format!(
                    "{:.2} GB/s 1 thread, {:.2} GB/s {} threads",
                    b.single_thread_gbs, b.all_threads_gbs, b.threads
                ),
                None => "not measured".into(),
            }
        }),
        ("OS", |s| {
            s.hardware.os.clone().unwrap_or_else(|| "unknown".into())
        }),
        ("Kernel", |s| {
            s.hardware
                .kernel
                .clone()
                .unwrap_or_else(|| "unknown".into())
        }),
        ("Backend", |s| s.hardware.backend.clone()),
        ("GPU", |s| {
            s.hardware.gpu.clone().unwrap_or_else(|| "none".into())
        }),
        ("rbench", |s| {
            format!(
                "{} (commit {}, ggml {}, {} {})",
                s.build.rbench_version,
                s.build.git_commit,
                s.build.ggml_version,
                s.build.target,
                s.build.profile
            )
        }),
    ];
    let rows = facts
        .iter()
        .map(|(name, f)| {
            let mut row = vec![name.to_string()];
            row.extend(machines.iter().map(|(_, s)| f(s)));
            row
        })
        .collect();
    w!(md, "{}\n", table(header, rows, usize::MAX));
}

pub(super) fn model_table(md: &mut String, inputs: &[Input]) {
    let mut models: Vec<&ModelIdentity> = Vec::new();
    for i in inputs {
        for m in i.saved.models() {
            if !models
                .iter()
                .any(|o| o.sha256_first_mib == m.sha256_first_mib && o.file_size == m.file_size)
            {
                models.push(m);
            }
        }
    }
    if models.is_empty() {
        return;
    }
    w!(md, "## Models\n");
    let mut header = vec![String::new()];
    header.extend(models.iter().map(|m| m.label()));

    let facts: [Fact<ModelIdentity>; 12] = [
        ("Name", |m| m.name.clone().unwrap_or_else(|| "–".into())),
        ("Architecture", |m| m.architecture.clone()),
        ("Parameters", |m| params(m.n_params)),
        ("Tensor data (read per token)", |m| bytes(m.model_size)),
        ("File type", |m| m.file_type.clone()),
        ("File size", |m| bytes(m.file_size)),
        ("Layers", |m| opt(m.n_layer)),
        ("Embedding width", |m| opt(m.n_embd)),
        ("Training context", |m| opt(m.context_length)),
        ("Synthetic", |m| {
            if m.synthetic {
                "yes (random weights)".into()
            } else {
                "no".into()
            }
        }),
        ("Path", |m| format!("`{}`", m.path)),
        ("sha256 of first MiB", |m| {
            format!(
                "`{}…`",
                m.sha256_first_mib.get(..16).unwrap_or(&m.sha256_first_mib)
            )
        }),
    ];
    let rows = facts
        .iter()
        .map(|(name, f)| {
            let mut row = vec![name.to_string()];
            row.extend(models.iter().map(|m| f(m)));
            row
        })
        .collect();
    w!(md, "{}\n", table(header, rows, usize::MAX));
}
