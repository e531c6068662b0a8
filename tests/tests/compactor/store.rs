//! The store a scenario runs on (a local directory or moto) and how the
//! scenarios read it back: pyarrow as a glob reader or as a manifest reader.

use std::sync::Arc;

use horizon_compactor::{Compactor, Settings};
use horizon_e2e::servers::Moto;
use horizon_e2e::{ParquetDataset, read_parquet};
use horizon_shared::store::{S3Options, StoreLocation};
use object_store::ObjectStore;
use object_store::path::Path;

/// A store under test and how pyarrow reads its compacted prefix.
pub(crate) struct TestStore {
    pub(crate) store: Arc<dyn ObjectStore>,
    pub(crate) url: String,
    pub(crate) s3: Option<(Moto, S3Options)>,
    _dir: tempfile::TempDir,
}

/// The stores every scenario runs on.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Backend {
    /// A local directory, as `shared::store` opens it.
    Local,
    /// S3 on a moto server.
    Moto,
}

impl TestStore {
    pub(crate) async fn new(backend: Backend) -> Self {
        match backend {
            Backend::Local => Self::local(),
            Backend::Moto => Self::moto().await,
        }
    }

    pub(crate) fn local() -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let url = dir.path().join("objects").display().to_string();
        let store = StoreLocation::parse(&url, &S3Options::default())
            .unwrap()
            .build()
            .unwrap();
        Self {
            store,
            url,
            s3: None,
            _dir: dir,
        }
    }

    pub(crate) async fn moto() -> Self {
        let moto = Moto::start("telemetry").await;
        let opts = S3Options {
            region: "us-east-1".into(),
            endpoint: moto.url(),
            path_style: true,
            allow_http: true,
            access_key_id: "test".into(),
            secret_access_key: "test".into(),
        };
        let url = "s3://telemetry/fleet".to_owned();
        let store = StoreLocation::parse(&url, &opts).unwrap().build().unwrap();
        Self {
            store,
            url,
            s3: Some((moto, opts)),
            _dir: tempfile::tempdir().expect("tempdir"),
        }
    }

    pub(crate) fn settings(&self, extra: &[&str]) -> Settings {
        let mut args = vec!["--store-url".to_owned(), self.url.clone()];
        if let Some((_, o)) = &self.s3 {
            args.extend([
                "--s3-endpoint".into(),
                o.endpoint.clone(),
                "--s3-path-style".into(),
                "--s3-allow-http".into(),
            ]);
        }
        // Small files and row groups, so that hours span several of each.
        args.extend([
            "--target-file-size".into(),
            "16KiB".into(),
            "--row-group-rows".into(),
            "1024".into(),
        ]);
        args.extend(extra.iter().map(|s| s.to_string()));
        Settings::from_args(args).expect("settings")
    }

    pub(crate) fn compactor(&self, extra: &[&str]) -> Compactor {
        Compactor::with_store(self.settings(extra), Arc::clone(&self.store))
    }

    pub(crate) fn read(&self) -> ParquetDataset {
        match &self.s3 {
            None => read_parquet(&["local", &format!("{}/compacted", self.url)]),
            Some((moto, _)) => {
                read_parquet(&["s3", &moto.addr.to_string(), "telemetry", "fleet/compacted"])
            }
        }
    }

    /// The compacted dataset as a manifest reader sees it (pyarrow reading
    /// exactly the files the current manifests list).
    pub(crate) fn read_manifests(&self) -> ParquetDataset {
        self.read_prefix_with("compacted", &["--manifests"])
    }

    /// The dataset under another compacted prefix (glob reader).
    pub(crate) fn read_prefix(&self, prefix: &str) -> ParquetDataset {
        self.read_prefix_with(prefix, &[])
    }

    pub(crate) fn read_prefix_with(&self, prefix: &str, extra: &[&str]) -> ParquetDataset {
        let mut args: Vec<String> = match &self.s3 {
            None => vec!["local".into(), format!("{}/{prefix}", self.url)],
            Some((moto, _)) => vec![
                "s3".into(),
                moto.addr.to_string(),
                "telemetry".into(),
                format!("fleet/{prefix}"),
            ],
        };
        args.extend(extra.iter().map(|s| s.to_string()));
        read_parquet(&args.iter().map(String::as_str).collect::<Vec<_>>())
    }

    /// The compacted dataset's files and manifests (leases aside: every run
    /// takes one).
    pub(crate) async fn dataset(&self) -> Vec<String> {
        let mut v = self.keys("compacted").await;
        v.retain(|k| !k.contains("/_leases/"));
        v
    }

    pub(crate) async fn keys(&self, prefix: &str) -> Vec<String> {
        let mut v: Vec<String> =
            horizon_compactor::store::list_all(&self.store, &Path::from(prefix))
                .await
                .expect("list")
                .into_iter()
                .map(|m| m.location.to_string())
                .collect();
        v.sort();
        v
    }
}
