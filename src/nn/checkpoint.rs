//! Reading MMPose / MMDetection checkpoints as they are published.
//!
//! Three container formats are recognised by their first bytes:
//! * PyTorch zip (`torch.save` since 1.6): `PK\x03\x04`; candle's pickle reader lists the
//!   tensors, their bytes are read here from one open archive;
//! * PyTorch legacy (non-zip) serialisation: a pickle starting `\x80\x02\x8a`, read here;
//! * safetensors: an 8-byte little-endian header length followed by `{`.
//!
//! A `{'state_dict': .., 'meta': ..}` wrapper (mmcv checkpoints) is unwrapped; a bare state dict
//! is accepted too. Key names are normalised the way MMPose 1.x does on load (`keypoint_head.` ->
//! `head.`), and `data_preprocessor.*` entries are dropped. Tensors are kept on the CPU in their
//! stored dtype until a model asks for them through [`Checkpoint::var_builder`].

use std::collections::{BTreeSet, HashMap, HashSet};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use candle_core::pickle::{Object, Stack};
use candle_core::{DType, Device, Shape, Tensor};
use candle_nn::var_builder::SimpleBackend;
use candle_nn::VarBuilder;

/// How a checkpoint file is stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CheckpointFormat {
    /// `torch.save` zip archive (PyTorch 1.6 and later), starting `PK\x03\x04`.
    TorchZip,
    /// Pre-1.6 PyTorch pickle stream, starting `\x80\x02\x8a`.
    TorchLegacy,
    /// safetensors: 8-byte little-endian header length, then a JSON header.
    Safetensors,
}

/// Why a checkpoint could not be read, or does not fit the model built from it.
#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    /// The file could not be opened or read.
    #[error("cannot read checkpoint {path}: {source}")]
    Io {
        /// The checkpoint file.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The first bytes match none of the three formats.
    #[error("{path}: not a PyTorch (.pth zip or legacy) or safetensors checkpoint")]
    UnknownFormat {
        /// The checkpoint file.
        path: PathBuf,
    },
    /// The format was recognised but the contents do not parse (truncated download, bad pickle).
    #[error("{path}: damaged or truncated {format:?} checkpoint: {reason}")]
    Corrupt {
        /// The checkpoint file.
        path: PathBuf,
        /// The format its first bytes announce.
        format: CheckpointFormat,
        /// The reader's error.
        reason: String,
    },
    /// The model asked for a tensor the file does not hold.
    #[error("{path}: tensor `{key}` is missing (wrong model architecture for this checkpoint?)")]
    Missing {
        /// The checkpoint file.
        path: PathBuf,
        /// The tensor's normalised name (`head.` for MMPose 0.x `keypoint_head.`).
        key: String,
    },
    /// The file's tensor has another shape than the model's parameter.
    #[error(
        "{path}: tensor `{key}` has shape {found:?} in the checkpoint but the model expects \
         {expected:?} (wrong model architecture or width for this checkpoint?)"
    )]
    Shape {
        /// The checkpoint file.
        path: PathBuf,
        /// The tensor's name as stored in the file.
        key: String,
        /// The model's shape.
        expected: Vec<usize>,
        /// The file's shape.
        found: Vec<usize>,
    },
    /// Tensors left over after the model was built: the file is for another architecture.
    #[error(
        "{path}: {count} tensor(s) not used by the model (wrong architecture?), e.g. {examples}"
    )]
    Unused {
        /// The checkpoint file.
        path: PathBuf,
        /// How many tensors went unused (BN `num_batches_tracked` counters not counted).
        count: usize,
        /// Up to five of their names as stored, comma-separated.
        examples: String,
    },
}

/// The tensors of one checkpoint file, with MMPose 1.x key names.
pub struct Checkpoint {
    inner: Arc<Inner>,
    format: CheckpointFormat,
}

struct Inner {
    path: PathBuf,
    tensors: HashMap<String, Tensor>,
    /// Normalised name -> name in the file, for error messages.
    original: HashMap<String, String>,
    used: Mutex<HashSet<String>>,
}

impl Checkpoint {
    /// Open a checkpoint, detecting its format from the first bytes.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, CheckpointError> {
        let path = path.as_ref().to_path_buf();
        let io = |source| CheckpointError::Io {
            path: path.clone(),
            source,
        };
        let mut head = [0u8; 9];
        let mut f = std::fs::File::open(&path).map_err(io)?;
        let n = read_up_to(&mut f, &mut head).map_err(io)?;
        drop(f);
        let head = &head[..n];
        let format = if head.starts_with(b"PK\x03\x04") {
            CheckpointFormat::TorchZip
        } else if head.starts_with(&[0x80, 0x02, 0x8a]) {
            CheckpointFormat::TorchLegacy
        } else if n == 9 && head[8] == b'{' {
            CheckpointFormat::Safetensors
        } else {
            return Err(CheckpointError::UnknownFormat { path });
        };
        let corrupt = |reason: String| CheckpointError::Corrupt {
            path: path.clone(),
            format,
            reason,
        };
        // candle's pickle reader can panic on malformed input (e.g. shift overflows in LONG1);
        // a damaged file must be an error, not a crash.
        let read = std::panic::catch_unwind(|| match format {
            CheckpointFormat::TorchZip => read_torch_zip(&path),
            CheckpointFormat::TorchLegacy => read_torch_legacy(&path),
            CheckpointFormat::Safetensors => {
                candle_core::safetensors::load(&path, &Device::Cpu).map(|m| m.into_iter().collect())
            }
        });
        let raw = match read {
            Ok(Ok(raw)) => raw,
            Ok(Err(e)) => return Err(corrupt(e.to_string())),
            Err(_) => return Err(corrupt("malformed pickle data".into())),
        };
        Ok(Self::from_named_tensors(path, format, raw))
    }

    fn from_named_tensors(
        path: PathBuf,
        format: CheckpointFormat,
        raw: Vec<(String, Tensor)>,
    ) -> Self {
        let mut tensors = HashMap::new();
        let mut original = HashMap::new();
        for (name, t) in raw {
            if name.starts_with("data_preprocessor.") {
                continue;
            }
            let norm = normalise_key(&name);
            original.insert(norm.clone(), name);
            tensors.insert(norm, t);
        }
        Self {
            inner: Arc::new(Inner {
                path,
                tensors,
                original,
                used: Mutex::new(HashSet::new()),
            }),
            format,
        }
    }

    /// The file this checkpoint was read from.
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// The container format detected on opening.
    pub fn format(&self) -> CheckpointFormat {
        self.format
    }

    /// Number of tensors, `data_preprocessor.*` entries excluded.
    pub fn len(&self) -> usize {
        self.inner.tensors.len()
    }

    /// Whether the file holds no tensors (after dropping `data_preprocessor.*`).
    pub fn is_empty(&self) -> bool {
        self.inner.tensors.is_empty()
    }

    /// Normalised key names, sorted.
    pub fn keys(&self) -> Vec<&str> {
        let mut k: Vec<&str> = self.inner.tensors.keys().map(|s| s.as_str()).collect();
        k.sort_unstable();
        k
    }

    /// A tensor by normalised name, as stored (CPU, file dtype).
    pub fn get(&self, key: &str) -> Option<&Tensor> {
        self.inner.tensors.get(key)
    }

    /// A `VarBuilder` over this checkpoint. Every tensor it hands out is recorded, so that
    /// [`Checkpoint::check_all_used`] can report what the model did not consume. Missing and
    /// misshapen tensors come back as [`CheckpointError`] messages naming the file and key.
    pub fn var_builder(&self, dtype: DType, device: &Device) -> VarBuilder<'static> {
        let backend: Box<dyn SimpleBackend> = Box::new(Tracked(self.inner.clone()));
        VarBuilder::from_backend(backend, dtype, device.clone())
    }

    /// Error if tensors were left over after building a model (an architecture mismatch such
    /// as more branches or blocks in the file). BN `num_batches_tracked` counters are ignored.
    pub fn check_all_used(&self) -> Result<(), CheckpointError> {
        let used = self.inner.used.lock().unwrap_or_else(|e| e.into_inner());
        let unused: BTreeSet<&str> = self
            .inner
            .tensors
            .keys()
            .filter(|k| !used.contains(*k) && !k.ends_with(".num_batches_tracked"))
            .map(|k| self.inner.original[k].as_str())
            .collect();
        if unused.is_empty() {
            return Ok(());
        }
        Err(CheckpointError::Unused {
            path: self.inner.path.clone(),
            count: unused.len(),
            examples: unused
                .iter()
                .take(5)
                .copied()
                .collect::<Vec<_>>()
                .join(", "),
        })
    }
}

/// MMPose 1.x renames 0.x heads on load; do the same so one model serves both layouts.
fn normalise_key(name: &str) -> String {
    if let Some(rest) = name.strip_prefix("keypoint_head.") {
        format!("head.{rest}")
    } else {
        name.to_string()
    }
}

struct Tracked(Arc<Inner>);

impl Tracked {
    fn fetch(&self, name: &str) -> candle_core::Result<&Tensor> {
        let t = self.0.tensors.get(name).ok_or_else(|| {
            candle_core::Error::wrap(CheckpointError::Missing {
                path: self.0.path.clone(),
                key: name.to_string(),
            })
        })?;
        self.0
            .used
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(name.to_string());
        Ok(t)
    }

    fn original(&self, name: &str) -> String {
        self.0
            .original
            .get(name)
            .cloned()
            .unwrap_or_else(|| name.to_string())
    }
}

impl SimpleBackend for Tracked {
    fn get(
        &self,
        s: Shape,
        name: &str,
        _h: candle_nn::Init,
        dtype: DType,
        dev: &Device,
    ) -> candle_core::Result<Tensor> {
        let t = self.fetch(name)?;
        if t.shape() != &s {
            return Err(candle_core::Error::wrap(CheckpointError::Shape {
                path: self.0.path.clone(),
                key: self.original(name),
                expected: s.dims().to_vec(),
                found: t.dims().to_vec(),
            }));
        }
        t.to_dtype(dtype)?.to_device(dev)
    }

    fn get_unchecked(&self, name: &str, dtype: DType, dev: &Device) -> candle_core::Result<Tensor> {
        self.fetch(name)?.to_dtype(dtype)?.to_device(dev)
    }

    fn contains_tensor(&self, name: &str) -> bool {
        self.0.tensors.contains_key(name)
    }
}

fn read_up_to(r: &mut impl Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..])? {
            0 => break,
            k => n += k,
        }
    }
    Ok(n)
}

fn read_torch_zip(path: &Path) -> candle_core::Result<Vec<(String, Tensor)>> {
    // mmcv checkpoints wrap the weights as {'state_dict', 'meta'}; plain state dicts exist too.
    let infos = match candle_core::pickle::read_pth_tensor_info(path, false, Some("state_dict")) {
        Ok(i) => i,
        Err(e) if e.to_string().contains("key state_dict not found") => {
            candle_core::pickle::read_pth_tensor_info(path, false, None)?
        }
        Err(e) => return Err(e),
    };
    // One archive for all tensors (candle's PthTensors reopens it for each).
    let file = std::fs::File::open(path)?;
    let mut zip =
        zip::ZipArchive::new(std::io::BufReader::new(file)).map_err(candle_core::Error::wrap)?;
    let mut out = Vec::with_capacity(infos.len());
    let mut bytes = Vec::new();
    for info in infos {
        let layout = &info.layout;
        let dims = layout.shape().dims().to_vec();
        let numel: usize = dims.iter().product();
        if numel > 1 && !layout.is_contiguous() {
            candle_core::bail!("{}: non-contiguous tensors are not supported", info.name);
        }
        let elem = info.dtype.size_in_bytes();
        let (begin, len) = (layout.start_offset(), numel * elem);
        let mut entry = zip.by_name(&info.path).map_err(candle_core::Error::wrap)?;
        bytes.clear();
        entry.read_to_end(&mut bytes)?;
        let data = bytes.get(begin..begin + len).ok_or_else(|| {
            candle_core::Error::msg(format!("{}: tensor data is short", info.name))
        })?;
        out.push((
            info.name,
            Tensor::from_raw_buffer(data, info.dtype, &dims, &Device::Cpu)?,
        ));
    }
    Ok(out)
}

/// Storage element size and dtype from a legacy storage class name.
fn storage_dtype(class_name: &str) -> candle_core::Result<DType> {
    Ok(match class_name {
        "FloatStorage" => DType::F32,
        "DoubleStorage" => DType::F64,
        "HalfStorage" => DType::F16,
        "BFloat16Storage" => DType::BF16,
        "ByteStorage" => DType::U8,
        "LongStorage" => DType::I64,
        other => candle_core::bail!("unsupported storage type {other}"),
    })
}

/// PyTorch's legacy format: five pickles (magic number, protocol version, system info, the
/// object, the list of storage keys), then each storage as an 8-byte element count and its raw
/// little-endian bytes, in the order of that list.
fn read_torch_legacy(path: &Path) -> candle_core::Result<Vec<(String, Tensor)>> {
    let bytes = std::fs::read(path)?;
    let mut r = std::io::Cursor::new(&bytes[..]);
    // The magic is a 10-byte LONG1, which candle's reader cannot hold in an i64: check it here.
    const MAGIC: [u8; 16] = [
        0x80, 0x02, 0x8a, 0x0a, 0x6c, 0xfc, 0x9c, 0x46, 0xf9, 0x20, 0x6a, 0xa8, 0x50, 0x19, 0x2e,
        0x00,
    ];
    if bytes.len() < 15 || bytes[..15] != MAGIC[..15] {
        candle_core::bail!("bad legacy magic number");
    }
    r.set_position(15);
    for what in ["protocol version", "system info"] {
        let mut s = Stack::empty();
        s.read_loop(&mut r)
            .map_err(|e| candle_core::Error::msg(format!("{what}: {e}")))?;
    }
    let mut s = Stack::empty();
    s.read_loop(&mut r)?;
    let obj = s.finalize()?;
    let mut s = Stack::empty();
    s.read_loop(&mut r)?;
    let keys = match s.finalize()? {
        Object::List(v) => v
            .into_iter()
            .map(|o| String::try_from(o).map_err(candle_core::Error::from))
            .collect::<candle_core::Result<Vec<String>>>()?,
        other => candle_core::bail!("storage key list expected, got {other:?}"),
    };

    // Tensor records: name -> (storage key, dtype, shape, stride, offset in elements).
    let state = match obj {
        Object::Dict(kv) => {
            let sd = kv
                .iter()
                .position(|(k, _)| *k == Object::Unicode("state_dict".into()));
            match sd {
                Some(i) => kv
                    .into_iter()
                    .nth(i)
                    .map(|(_, v)| v)
                    .unwrap_or(Object::None),
                None => Object::Dict(kv),
            }
        }
        other => other,
    };
    let entries = match state {
        Object::Dict(kv) => kv,
        _ => candle_core::bail!("no state dict in the checkpoint"),
    };
    let mut records = Vec::new();
    let mut storage_dtypes: HashMap<String, DType> = HashMap::new();
    for (name, value) in entries {
        let Ok(name) = name.unicode() else { continue };
        let Some(rec) = legacy_tensor_record(value)? else {
            continue;
        };
        storage_dtypes.insert(rec.storage.clone(), rec.dtype);
        records.push((name, rec));
    }

    // Locate every storage's bytes.
    let mut pos = r.position() as usize;
    let mut storages: HashMap<String, (usize, usize)> = HashMap::new();
    for key in keys {
        let count_bytes = bytes
            .get(pos..pos + 8)
            .ok_or_else(|| candle_core::Error::msg("file ends inside the storage table"))?;
        let count = u64::from_le_bytes(count_bytes.try_into().expect("8 bytes")) as usize;
        pos += 8;
        let elem = storage_dtypes
            .get(&key)
            .map(|d| d.size_in_bytes())
            .ok_or_else(|| {
                candle_core::Error::msg(format!("storage {key} is not used by any tensor"))
            })?;
        let len = count
            .checked_mul(elem)
            .filter(|&l| pos + l <= bytes.len())
            .ok_or_else(|| candle_core::Error::msg(format!("file ends inside storage {key}")))?;
        storages.insert(key, (pos, len));
        pos += len;
    }

    let mut out = Vec::with_capacity(records.len());
    for (name, rec) in records {
        let (start, len) = *storages.get(&rec.storage).ok_or_else(|| {
            candle_core::Error::msg(format!("{name}: storage {} missing", rec.storage))
        })?;
        let elem = rec.dtype.size_in_bytes();
        let numel: usize = rec.shape.iter().product();
        let mut contiguous = vec![1usize; rec.shape.len()];
        for d in (0..rec.shape.len().saturating_sub(1)).rev() {
            contiguous[d] = contiguous[d + 1] * rec.shape[d + 1];
        }
        if numel > 1 && rec.stride != contiguous {
            candle_core::bail!("{name}: non-contiguous tensors are not supported");
        }
        let begin = start + rec.offset * elem;
        let end = begin + numel * elem;
        if end > start + len {
            candle_core::bail!("{name}: tensor extends past its storage");
        }
        let t = Tensor::from_raw_buffer(&bytes[begin..end], rec.dtype, &rec.shape, &Device::Cpu)?;
        out.push((name, t));
    }
    Ok(out)
}

struct LegacyRecord {
    storage: String,
    dtype: DType,
    shape: Vec<usize>,
    stride: Vec<usize>,
    offset: usize,
}

/// `torch._utils._rebuild_tensor_v2(('storage', torch.XStorage, key, location, numel, None),
/// offset, size, stride, requires_grad, hooks)`; anything else is not a tensor.
fn legacy_tensor_record(value: Object) -> candle_core::Result<Option<LegacyRecord>> {
    let Ok((callable, args)) = value.reduce() else {
        return Ok(None);
    };
    match callable {
        Object::Class {
            module_name,
            class_name,
        } if module_name == "torch._utils" && class_name == "_rebuild_tensor_v2" => {}
        _ => return Ok(None),
    }
    let mut args = args.tuple()?.into_iter();
    let (Some(storage), Some(offset), Some(size), Some(stride)) =
        (args.next(), args.next(), args.next(), args.next())
    else {
        candle_core::bail!("short _rebuild_tensor_v2 arguments")
    };
    let storage = storage.persistent_load()?.tuple()?;
    if storage.len() < 3 {
        candle_core::bail!("short storage record");
    }
    let mut it = storage.into_iter().skip(1);
    let (_, class_name) = it.next().expect("checked length").class()?;
    let key = it.next().expect("checked length").unicode()?;
    Ok(Some(LegacyRecord {
        storage: key,
        dtype: storage_dtype(&class_name)?,
        shape: Vec::<usize>::try_from(size)?,
        stride: Vec::<usize>::try_from(stride)?,
        offset: usize::try_from(offset)?,
    }))
}
