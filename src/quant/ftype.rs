//! llama.cpp's model file types (`general.file_type`, the `ftype`
//! enum) and the per-type breakdown of a model's tensors.

use super::GgmlType;

/// Flag llama.cpp ORs into a file type it guessed rather than read.
const FTYPE_GUESSED: u32 = 1024;

/// (id, llama.cpp's display name, the short name `llama-quantize` accepts,
/// the type most weights get as in llama.cpp's default-type table).
/// Ids 4..=6 and 33..=35 were removed upstream.
const FILE_TYPES: &[(u32, &str, &str, GgmlType)] = &[
    (0, "all F32", "f32", GgmlType::F32),
    (1, "F16", "f16", GgmlType::F16),
    (2, "Q4_0", "q4_0", GgmlType::Q4_0),
    (3, "Q4_1", "q4_1", GgmlType::Q4_1),
    (7, "Q8_0", "q8_0", GgmlType::Q8_0),
    (8, "Q5_0", "q5_0", GgmlType::Q5_0),
    (9, "Q5_1", "q5_1", GgmlType::Q5_1),
    (10, "Q2_K - Medium", "q2_k", GgmlType::Q2_K),
    (11, "Q3_K - Small", "q3_k_s", GgmlType::Q3_K),
    (12, "Q3_K - Medium", "q3_k_m", GgmlType::Q3_K),
    (13, "Q3_K - Large", "q3_k_l", GgmlType::Q3_K),
    (14, "Q4_K - Small", "q4_k_s", GgmlType::Q4_K),
    (15, "Q4_K - Medium", "q4_k_m", GgmlType::Q4_K),
    (16, "Q5_K - Small", "q5_k_s", GgmlType::Q5_K),
    (17, "Q5_K - Medium", "q5_k_m", GgmlType::Q5_K),
    (18, "Q6_K", "q6_k", GgmlType::Q6_K),
    (19, "IQ2_XXS - 2.0625 bpw", "iq2_xxs", GgmlType::IQ2_XXS),
    (20, "IQ2_XS - 2.3125 bpw", "iq2_xs", GgmlType::IQ2_XS),
    (21, "Q2_K - Small", "q2_k_s", GgmlType::Q2_K),
    (22, "IQ3_XS - 3.3 bpw", "iq3_xs", GgmlType::IQ3_S),
    (23, "IQ3_XXS - 3.0625 bpw", "iq3_xxs", GgmlType::IQ3_XXS),
    (24, "IQ1_S - 1.5625 bpw", "iq1_s", GgmlType::IQ1_S),
    (25, "IQ4_NL - 4.5 bpw", "iq4_nl", GgmlType::IQ4_NL),
    (26, "IQ3_S - 3.4375 bpw", "iq3_s", GgmlType::IQ3_S),
    (27, "IQ3_S mix - 3.66 bpw", "iq3_m", GgmlType::IQ3_S),
    (28, "IQ2_S - 2.5 bpw", "iq2_s", GgmlType::IQ2_XS),
    (29, "IQ2_M - 2.7 bpw", "iq2_m", GgmlType::IQ2_S),
    (30, "IQ4_XS - 4.25 bpw", "iq4_xs", GgmlType::IQ4_XS),
    (31, "IQ1_M - 1.75 bpw", "iq1_m", GgmlType::IQ1_M),
    (32, "BF16", "bf16", GgmlType::BF16),
    (36, "TQ1_0 - 1.69 bpw ternary", "tq1_0", GgmlType::TQ1_0),
    (37, "TQ2_0 - 2.06 bpw ternary", "tq2_0", GgmlType::TQ2_0),
    (38, "MXFP4 MoE", "mxfp4_moe", GgmlType::MXFP4),
    (39, "NVFP4", "nvfp4", GgmlType::NVFP4),
    (40, "Q1_0", "q1_0", GgmlType::Q1_0),
    (41, "Q2_0", "q2_0", GgmlType::Q2_0),
];

/// llama.cpp's display name for a `general.file_type` value, e.g.
/// 15 -> "Q4_K - Medium"; `None` for ids llama.cpp does not know. The
/// "guessed" flag (1024) is ignored here; see [`file_type_is_guessed`].
pub fn file_type_name(ftype: u32) -> Option<&'static str> {
    let id = ftype & !FTYPE_GUESSED;
    FILE_TYPES
        .iter()
        .find(|(i, ..)| *i == id)
        .map(|(_, name, ..)| *name)
}

/// Whether llama.cpp's "guessed, not read from the file" flag is set.
pub fn file_type_is_guessed(ftype: u32) -> bool {
    ftype & FTYPE_GUESSED != 0
}

/// The `general.file_type` id for a short name as `llama-quantize` and our
/// synthetic models spell it (`q4_k_m`, `q8_0`, `f16`; case-insensitive).
pub fn file_type_from_name(name: &str) -> Option<u32> {
    FILE_TYPES
        .iter()
        .find(|(_, _, short, _)| short.eq_ignore_ascii_case(name))
        .map(|(id, ..)| *id)
}

/// The type most weight matrices of a file of this type are stored in
/// (`Q4_K` for "Q4_K - Medium"); mixes put some tensors in other types.
pub fn file_type_main_type(ftype: u32) -> Option<GgmlType> {
    let id = ftype & !FTYPE_GUESSED;
    FILE_TYPES
        .iter()
        .find(|(i, ..)| *i == id)
        .map(|(.., ty)| *ty)
}

/// One tensor type's share of a model.
#[derive(Debug, Clone, PartialEq)]
pub struct TypeMixRow {
    pub ty: GgmlType,
    pub n_tensors: usize,
    pub n_bytes: u64,
    pub n_elements: u64,
    /// Fraction of all tensor bytes, in 0..=1.
    pub share: f64,
}

/// The tensors of a model grouped by type, largest byte count first.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct TypeMix {
    pub rows: Vec<TypeMixRow>,
}

impl TypeMix {
    pub fn total_bytes(&self) -> u64 {
        self.rows.iter().map(|r| r.n_bytes).sum()
    }

    pub fn total_elements(&self) -> u64 {
        self.rows.iter().map(|r| r.n_elements).sum()
    }

    pub fn total_tensors(&self) -> usize {
        self.rows.iter().map(|r| r.n_tensors).sum()
    }

    /// Average bits per weight over all tensors (0 for an empty mix).
    pub fn bits_per_weight(&self) -> f64 {
        let n = self.total_elements();
        if n == 0 {
            0.0
        } else {
            self.total_bytes() as f64 * 8.0 / n as f64
        }
    }
}

/// Groups `(type, elements, bytes)` per tensor into a [`TypeMix`], sorted
/// by bytes (descending; ties by type id so the order is stable).
pub fn type_mix(items: impl IntoIterator<Item = (GgmlType, u64, u64)>) -> TypeMix {
    let mut rows: Vec<TypeMixRow> = Vec::new();
    for (ty, n_elements, n_bytes) in items {
        match rows.iter_mut().find(|r| r.ty == ty) {
            Some(row) => {
                row.n_tensors += 1;
                row.n_elements = row.n_elements.saturating_add(n_elements);
                row.n_bytes = row.n_bytes.saturating_add(n_bytes);
            }
            None => rows.push(TypeMixRow {
                ty,
                n_tensors: 1,
                n_bytes,
                n_elements,
                share: 0.0,
            }),
        }
    }
    let total: u64 = rows.iter().map(|r| r.n_bytes).sum();
    for row in &mut rows {
        row.share = if total == 0 {
            0.0
        } else {
            row.n_bytes as f64 / total as f64
        };
    }
    rows.sort_by(|a, b| b.n_bytes.cmp(&a.n_bytes).then(a.ty.cmp(&b.ty)));
    TypeMix { rows }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_match_upstream() {
        assert_eq!(file_type_name(15), Some("Q4_K - Medium"));
        assert_eq!(file_type_name(7), Some("Q8_0"));
        assert_eq!(file_type_name(1), Some("F16"));
        assert_eq!(file_type_name(0), Some("all F32"));
        assert_eq!(file_type_name(18), Some("Q6_K"));
        assert_eq!(file_type_name(32), Some("BF16"));
        assert_eq!(file_type_name(1024 + 15), Some("Q4_K - Medium"));
        assert!(file_type_is_guessed(1024 + 15));
        assert!(!file_type_is_guessed(15));
        for removed in [4, 5, 6, 33, 34, 35, 42, 1023] {
            assert_eq!(file_type_name(removed), None, "{removed}");
        }
    }

    #[test]
    fn short_names_round_trip() {
        assert_eq!(file_type_from_name("q4_k_m"), Some(15));
        assert_eq!(file_type_from_name("Q4_K_M"), Some(15));
        assert_eq!(file_type_from_name("q8_0"), Some(7));
        assert_eq!(file_type_from_name("f16"), Some(1));
        assert_eq!(file_type_from_name("f32"), Some(0));
        assert_eq!(file_type_from_name("q4_k"), None);
        assert_eq!(file_type_from_name(""), None);
        for (id, ..) in FILE_TYPES {
            let short = FILE_TYPES.iter().find(|e| e.0 == *id).unwrap().2;
            assert_eq!(file_type_from_name(short), Some(*id));
        }
        assert_eq!(file_type_main_type(15), Some(GgmlType::Q4_K));
        assert_eq!(file_type_main_type(7), Some(GgmlType::Q8_0));
        assert_eq!(file_type_main_type(99), None);
    }

    #[test]
    fn type_mix_groups_sums_and_sorts() {
        let mix = type_mix([
            (GgmlType::F32, 640, 2560),
            (GgmlType::Q4_K, 256 * 100, 144 * 100),
            (GgmlType::Q6_K, 256 * 10, 210 * 10),
            (GgmlType::F32, 640, 2560),
            (GgmlType::Q4_K, 256 * 20, 144 * 20),
        ]);
        let tys: Vec<GgmlType> = mix.rows.iter().map(|r| r.ty).collect();
        assert_eq!(tys, [GgmlType::Q4_K, GgmlType::F32, GgmlType::Q6_K]);
        assert_eq!(mix.rows[0].n_tensors, 2);
        assert_eq!(mix.rows[0].n_bytes, 144 * 120);
        assert_eq!(mix.rows[0].n_elements, 256 * 120);
        assert_eq!(mix.total_tensors(), 5);
        assert_eq!(mix.total_bytes(), 144 * 120 + 5120 + 2100);
        assert_eq!(mix.total_elements(), 256 * 130 + 1280);
        let share_sum: f64 = mix.rows.iter().map(|r| r.share).sum();
        assert!((share_sum - 1.0).abs() < 1e-12);
        assert!((mix.rows[1].share - 5120.0 / mix.total_bytes() as f64).abs() < 1e-12);
        assert!(type_mix([]).rows.is_empty());
        assert_eq!(type_mix([]).bits_per_weight(), 0.0);
    }
}
