//! The pickle machine of the `.pth` reader: the subset of opcodes and globals `torch.save` uses.
use super::*;

/// A pickle value. Compound objects live in the machine's arena, so that objects shared through the
/// memo stay one object, and deep nesting never recurses (neither here nor on drop).
#[derive(Clone, Debug)]
pub(super) enum Value {
    None,
    Bool(bool),
    Int(i64),
    /// An integer beyond `i64`, as little-endian two's-complement bytes.
    BigInt(Rc<[u8]>),
    #[allow(dead_code)] // read through Debug in error messages only
    Float(f64),
    Str(Rc<str>),
    Bytes(Rc<[u8]>),
    /// Index into the arena.
    Obj(usize),
}

/// A compound object.
#[derive(Debug)]
pub(super) enum Obj {
    List(Vec<Value>),
    Tuple(Vec<Value>),
    Dict(Vec<(Value, Value)>),
    /// A class or function named by GLOBAL / STACK_GLOBAL (never imported or run).
    Global {
        module: String,
        name: String,
    },
    Storage(StorageRef),
    Tensor(TensorRef),
    /// The result of calling or instantiating a global this reader does not know.
    Opaque(String),
}

/// A reference to (part of) a storage.
#[derive(Clone, Debug)]
pub(super) struct StorageRef {
    pub(super) key: String,
    pub(super) dtype: Dtype,
    /// Legacy storage views: (offset, length) in elements of the root storage.
    pub(super) view: Option<(usize, usize)>,
}

/// A tensor view of a storage, in elements.
#[derive(Clone, Debug)]
pub(super) struct TensorRef {
    pub(super) storage: StorageRef,
    pub(super) offset: usize,
    pub(super) shape: Vec<usize>,
    pub(super) stride: Vec<usize>,
}

/// The most dimensions a tensor may have here (real tensors have far fewer): bounds what a corrupt
/// size tuple can make us allocate.
pub(super) const MAX_DIMS: usize = 64;

/// The pickle machine: reads pickles one after the other from `b`, starting at `pos`.
pub(super) struct Machine<'a> {
    pub(super) b: &'a [u8],
    pub(super) pos: usize,
    pub(super) origin: &'a Path,
    /// Names the pickle in errors ("data.pkl", "the legacy stream").
    pub(super) what: String,
    pub(super) arena: Vec<Obj>,
    /// The dtype each storage key was first referenced with (the legacy data section needs it).
    pub(super) storages: HashMap<String, Dtype>,
}

impl<'a> Machine<'a> {
    pub(super) fn new(b: &'a [u8], origin: &'a Path, what: impl Into<String>) -> Self {
        Machine {
            b,
            pos: 0,
            origin,
            what: what.into(),
            arena: Vec::new(),
            storages: HashMap::new(),
        }
    }

    pub(super) fn err(&self, at: usize, msg: impl std::fmt::Display) -> Error {
        Error::format(self.origin, format!("{} byte {at}: {msg}", self.what))
    }

    pub(super) fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        let b: &'a [u8] = self.b;
        let s = self
            .pos
            .checked_add(n)
            .and_then(|e| b.get(self.pos..e))
            .ok_or_else(|| {
                self.err(
                    self.pos,
                    format!("truncated pickle ({n} more bytes needed, file truncated or corrupt)"),
                )
            })?;
        self.pos += n;
        Ok(s)
    }

    pub(super) fn u8(&mut self) -> Result<u8> {
        Ok(self.take(1)?[0])
    }

    pub(super) fn u16(&mut self) -> Result<u16> {
        let s = self.take(2)?;
        Ok(u16::from_le_bytes([s[0], s[1]]))
    }

    pub(super) fn u32(&mut self) -> Result<u32> {
        let s = self.take(4)?;
        Ok(u32::from_le_bytes([s[0], s[1], s[2], s[3]]))
    }

    pub(super) fn len8(&mut self, at: usize) -> Result<usize> {
        let s = self.take(8)?;
        let n = u64::from_le_bytes([s[0], s[1], s[2], s[3], s[4], s[5], s[6], s[7]]);
        usize::try_from(n).map_err(|_| self.err(at, format!("length {n} is too large")))
    }

    /// A newline-terminated line (GLOBAL's module and name).
    pub(super) fn line(&mut self) -> Result<String> {
        let rest = &self.b[self.pos.min(self.b.len())..];
        let n = rest
            .iter()
            .position(|&c| c == b'\n')
            .ok_or_else(|| self.err(self.pos, "truncated pickle (unterminated GLOBAL name)"))?;
        let s = String::from_utf8_lossy(&rest[..n]).into_owned();
        self.pos += n + 1;
        Ok(s)
    }

    pub(super) fn alloc(&mut self, o: Obj) -> Value {
        self.arena.push(o);
        Value::Obj(self.arena.len() - 1)
    }

    pub(super) fn obj(&self, v: &Value) -> Option<&Obj> {
        match v {
            Value::Obj(i) => self.arena.get(*i),
            _ => None,
        }
    }

    /// What a value is, for error messages.
    pub(super) fn kind(&self, v: &Value) -> String {
        match v {
            Value::None => "None".into(),
            Value::Bool(_) => "bool".into(),
            Value::Int(_) | Value::BigInt(_) => "int".into(),
            Value::Float(_) => "float".into(),
            Value::Str(_) => "str".into(),
            Value::Bytes(_) => "bytes".into(),
            Value::Obj(_) => match self.obj(v) {
                Some(Obj::List(_)) => "list".into(),
                Some(Obj::Tuple(_)) => "tuple".into(),
                Some(Obj::Dict(_)) => "dict".into(),
                Some(Obj::Global { module, name }) => format!("global {module}.{name}"),
                Some(Obj::Storage(_)) => "storage".into(),
                Some(Obj::Tensor(_)) => "tensor".into(),
                Some(Obj::Opaque(name)) => format!("{name} object"),
                None => "invalid reference".into(),
            },
        }
    }

    pub(super) fn pop(&self, stack: &mut Vec<Value>, at: usize) -> Result<Value> {
        stack
            .pop()
            .ok_or_else(|| self.err(at, "pickle stack underflow (corrupt pickle)"))
    }

    pub(super) fn top(&self, stack: &[Value], at: usize) -> Result<Value> {
        stack
            .last()
            .cloned()
            .ok_or_else(|| self.err(at, "pickle stack underflow (corrupt pickle)"))
    }

    pub(super) fn pop_mark(
        &self,
        stack: &mut Vec<Value>,
        marks: &mut Vec<usize>,
        at: usize,
    ) -> Result<Vec<Value>> {
        match marks.pop() {
            Some(m) if m <= stack.len() => Ok(stack.split_off(m)),
            _ => Err(self.err(at, "pickle MARK missing (corrupt pickle)")),
        }
    }

    pub(super) fn text(&mut self, n: usize) -> Result<Value> {
        let s = self.take(n)?;
        Ok(Value::Str(String::from_utf8_lossy(s).into()))
    }

    pub(super) fn bytes(&mut self, n: usize) -> Result<Value> {
        Ok(Value::Bytes(self.take(n)?.into()))
    }

    /// Runs one pickle, from PROTO to STOP, and returns its value.
    pub(super) fn load(&mut self) -> Result<Value> {
        let mut stack: Vec<Value> = Vec::new();
        let mut marks: Vec<usize> = Vec::new();
        let mut memo: HashMap<u64, Value> = HashMap::new();
        loop {
            let at = self.pos;
            let op = self.u8()?;
            match op {
                0x80 => {
                    let v = self.u8()?;
                    if v > 5 {
                        return Err(self.err(at, format!("unsupported pickle protocol {v}")));
                    }
                }
                0x95 => {
                    self.take(8)?; // FRAME: a length hint only
                }
                b'.' => return self.pop(&mut stack, at),
                b'(' => marks.push(stack.len()),
                b'}' => {
                    let v = self.alloc(Obj::Dict(Vec::new()));
                    stack.push(v);
                }
                b']' | 0x8f => {
                    let v = self.alloc(Obj::List(Vec::new()));
                    stack.push(v);
                }
                b')' => {
                    let v = self.alloc(Obj::Tuple(Vec::new()));
                    stack.push(v);
                }
                0x85..=0x87 => {
                    let n = (op - 0x84) as usize;
                    if stack.len() < n {
                        return Err(self.err(at, "pickle stack underflow (corrupt pickle)"));
                    }
                    let items = stack.split_off(stack.len() - n);
                    let v = self.alloc(Obj::Tuple(items));
                    stack.push(v);
                }
                b't' => {
                    let items = self.pop_mark(&mut stack, &mut marks, at)?;
                    let v = self.alloc(Obj::Tuple(items));
                    stack.push(v);
                }
                0x91 => {
                    let items = self.pop_mark(&mut stack, &mut marks, at)?;
                    let v = self.alloc(Obj::List(items));
                    stack.push(v);
                }
                b'J' => {
                    let v = self.u32()? as i32;
                    stack.push(Value::Int(v as i64));
                }
                b'K' => {
                    let v = self.u8()?;
                    stack.push(Value::Int(v as i64));
                }
                b'M' => {
                    let v = self.u16()?;
                    stack.push(Value::Int(v as i64));
                }
                0x8a | 0x8b => {
                    let n = if op == 0x8a {
                        self.u8()? as usize
                    } else {
                        self.u32()? as usize
                    };
                    let s = self.take(n)?;
                    stack.push(if n <= 8 {
                        let mut w = if s.last().is_some_and(|&c| c & 0x80 != 0) {
                            [0xff; 8]
                        } else {
                            [0; 8]
                        };
                        w[..n].copy_from_slice(s);
                        Value::Int(i64::from_le_bytes(w))
                    } else {
                        Value::BigInt(s.into())
                    });
                }
                b'G' => {
                    let s = self.take(8)?;
                    let v = f64::from_be_bytes([s[0], s[1], s[2], s[3], s[4], s[5], s[6], s[7]]);
                    stack.push(Value::Float(v));
                }
                b'N' => stack.push(Value::None),
                0x88 => stack.push(Value::Bool(true)),
                0x89 => stack.push(Value::Bool(false)),
                b'X' => {
                    let n = self.u32()? as usize;
                    let v = self.text(n)?;
                    stack.push(v);
                }
                0x8c | b'U' => {
                    let n = self.u8()? as usize;
                    let v = self.text(n)?;
                    stack.push(v);
                }
                0x8d => {
                    let n = self.len8(at)?;
                    let v = self.text(n)?;
                    stack.push(v);
                }
                b'T' => {
                    let n = self.u32()? as i32;
                    let n = usize::try_from(n)
                        .map_err(|_| self.err(at, "negative BINSTRING length"))?;
                    let v = self.text(n)?;
                    stack.push(v);
                }
                b'B' => {
                    let n = self.u32()? as usize;
                    let v = self.bytes(n)?;
                    stack.push(v);
                }
                b'C' => {
                    let n = self.u8()? as usize;
                    let v = self.bytes(n)?;
                    stack.push(v);
                }
                0x8e => {
                    let n = self.len8(at)?;
                    let v = self.bytes(n)?;
                    stack.push(v);
                }
                b'q' | b'r' | 0x94 => {
                    let i = match op {
                        b'q' => self.u8()? as u64,
                        b'r' => self.u32()? as u64,
                        _ => memo.len() as u64,
                    };
                    let v = self.top(&stack, at)?;
                    memo.insert(i, v);
                }
                b'h' | b'j' => {
                    let i = if op == b'h' {
                        self.u8()? as u64
                    } else {
                        self.u32()? as u64
                    };
                    let v = memo.get(&i).cloned().ok_or_else(|| {
                        self.err(at, format!("memo slot {i} is empty (corrupt pickle)"))
                    })?;
                    stack.push(v);
                }
                b'c' => {
                    let module = self.line()?;
                    let name = self.line()?;
                    let v = self.alloc(Obj::Global { module, name });
                    stack.push(v);
                }
                0x93 => {
                    let name = self.pop(&mut stack, at)?;
                    let module = self.pop(&mut stack, at)?;
                    let (Value::Str(module), Value::Str(name)) = (&module, &name) else {
                        return Err(self.err(at, "STACK_GLOBAL needs two strings"));
                    };
                    let v = self.alloc(Obj::Global {
                        module: module.to_string(),
                        name: name.to_string(),
                    });
                    stack.push(v);
                }
                b'R' => {
                    let args = self.pop(&mut stack, at)?;
                    let f = self.pop(&mut stack, at)?;
                    let v = self.call(&f, &args, at, 0)?;
                    stack.push(v);
                }
                0x81 | 0x92 => {
                    if op == 0x92 {
                        self.pop(&mut stack, at)?; // NEWOBJ_EX's keyword arguments
                    }
                    self.pop(&mut stack, at)?; // the arguments of cls.__new__
                    let cls = self.pop(&mut stack, at)?;
                    let v = self.new_obj(&cls, at)?;
                    stack.push(v);
                }
                b'b' => {
                    // BUILD sets an object's state (`_metadata` of a state dict, attributes of
                    // opaque objects): nothing a tensor needs.
                    self.pop(&mut stack, at)?;
                    self.top(&stack, at)?;
                }
                b's' => {
                    let v = self.pop(&mut stack, at)?;
                    let k = self.pop(&mut stack, at)?;
                    let target = self.top(&stack, at)?;
                    self.set_items(&target, vec![k, v], at)?;
                }
                b'u' => {
                    let items = self.pop_mark(&mut stack, &mut marks, at)?;
                    if items.len() % 2 != 0 {
                        return Err(self.err(at, "SETITEMS with an odd number of items"));
                    }
                    let target = self.top(&stack, at)?;
                    self.set_items(&target, items, at)?;
                }
                b'a' => {
                    let v = self.pop(&mut stack, at)?;
                    let target = self.top(&stack, at)?;
                    self.append(&target, vec![v], at)?;
                }
                b'e' | 0x90 => {
                    let items = self.pop_mark(&mut stack, &mut marks, at)?;
                    let target = self.top(&stack, at)?;
                    self.append(&target, items, at)?;
                }
                b'Q' => {
                    let pid = self.pop(&mut stack, at)?;
                    let v = self.persistent_load(&pid, at)?;
                    stack.push(v);
                }
                b'0' => {
                    self.pop(&mut stack, at)?;
                }
                b'1' => {
                    self.pop_mark(&mut stack, &mut marks, at)?;
                }
                b'2' => {
                    let v = self.top(&stack, at)?;
                    stack.push(v);
                }
                _ => {
                    let shown = if op.is_ascii_graphic() {
                        format!(" ('{}')", op as char)
                    } else {
                        String::new()
                    };
                    return Err(self.err(
                        at,
                        format!(
                            "unsupported pickle opcode 0x{op:02x}{shown} (this reader knows the \
                             binary opcodes torch.save writes; corrupt file?)"
                        ),
                    ));
                }
            }
        }
    }

    pub(super) fn set_items(&mut self, target: &Value, items: Vec<Value>, at: usize) -> Result<()> {
        let kind = self.kind(target);
        let i = match target {
            Value::Obj(i) => *i,
            _ => return Err(self.err(at, format!("SETITEM on a {kind}"))),
        };
        match self.arena.get_mut(i) {
            Some(Obj::Dict(d)) => {
                let mut it = items.into_iter();
                while let (Some(k), Some(v)) = (it.next(), it.next()) {
                    d.push((k, v));
                }
                Ok(())
            }
            Some(Obj::Opaque(_)) => Ok(()),
            _ => Err(self.err(at, format!("SETITEM on a {kind}"))),
        }
    }

    pub(super) fn append(&mut self, target: &Value, items: Vec<Value>, at: usize) -> Result<()> {
        let kind = self.kind(target);
        let i = match target {
            Value::Obj(i) => *i,
            _ => return Err(self.err(at, format!("APPEND to a {kind}"))),
        };
        match self.arena.get_mut(i) {
            Some(Obj::List(l)) => {
                l.extend(items);
                Ok(())
            }
            Some(Obj::Opaque(_)) => Ok(()),
            _ => Err(self.err(at, format!("APPEND to a {kind}"))),
        }
    }

    pub(super) fn global(&self, v: &Value) -> Option<(String, String)> {
        match self.obj(v) {
            Some(Obj::Global { module, name }) => Some((module.clone(), name.clone())),
            _ => None,
        }
    }

    /// NEWOBJ: `cls.__new__(cls, *args)`.
    pub(super) fn new_obj(&mut self, cls: &Value, at: usize) -> Result<Value> {
        let Some((module, name)) = self.global(cls) else {
            let kind = self.kind(cls);
            return Err(self.err(at, format!("NEWOBJ on a {kind}, not a class")));
        };
        Ok(if module == "collections" && name == "OrderedDict" {
            self.alloc(Obj::Dict(Vec::new()))
        } else {
            self.alloc(Obj::Opaque(format!("{module}.{name}")))
        })
    }

    /// REDUCE: `f(*args)` for the few functions a state dict uses; anything else is opaque.
    pub(super) fn call(&mut self, f: &Value, args: &Value, at: usize, depth: u32) -> Result<Value> {
        let Some((module, name)) = self.global(f) else {
            let kind = self.kind(f);
            return Err(self.err(at, format!("REDUCE calls a {kind}, not a global")));
        };
        let args = match self.obj(args) {
            Some(Obj::Tuple(a)) => a.clone(),
            _ => {
                let kind = self.kind(args);
                return Err(self.err(
                    at,
                    format!("REDUCE: the arguments of {module}.{name} are a {kind}, not a tuple"),
                ));
            }
        };
        match (module.as_str(), name.as_str()) {
            // OrderedDict pickles as OrderedDict() followed by SETITEMS.
            ("collections", "OrderedDict") if args.is_empty() => {
                Ok(self.alloc(Obj::Dict(Vec::new())))
            }
            ("torch._utils", "_rebuild_tensor_v2" | "_rebuild_tensor") => {
                self.rebuild_tensor(&name, &args, at)
            }
            ("torch._utils", "_rebuild_parameter" | "_rebuild_parameter_with_state") => args
                .first()
                .cloned()
                .ok_or_else(|| self.err(at, format!("{name} without arguments"))),
            ("torch._tensor" | "torch.tensor", "_rebuild_from_type_v2" | "_rebuild_from_type")
                if depth == 0 && args.len() >= 3 =>
            {
                // (func, type, args, state): a tensor subclass; rebuild the plain tensor.
                let (func, inner) = (args[0].clone(), args[2].clone());
                self.call(&func, &inner, at, depth + 1)
            }
            ("torch", "Size") => Ok(args.first().cloned().unwrap_or(Value::None)),
            ("_codecs", "encode") => match args.first() {
                // How protocol 2 pickles `bytes` under Python 3: encode(latin-1 text, 'latin1').
                Some(Value::Str(s)) => Ok(Value::Bytes(
                    s.chars().map(|c| u8::try_from(c).unwrap_or(b'?')).collect(),
                )),
                _ => Ok(self.alloc(Obj::Opaque("_codecs.encode".into()))),
            },
            _ => Ok(self.alloc(Obj::Opaque(format!("{module}.{name}")))),
        }
    }

    pub(super) fn usize_of(&self, v: &Value, what: &str, at: usize) -> Result<usize> {
        match v {
            Value::Int(i) => {
                usize::try_from(*i).map_err(|_| self.err(at, format!("{what} is negative ({i})")))
            }
            Value::Bool(b) => Ok(*b as usize),
            _ => Err(self.err(at, format!("{what} is a {}, not an int", self.kind(v)))),
        }
    }

    pub(super) fn usize_list(&self, v: &Value, what: &str, at: usize) -> Result<Vec<usize>> {
        match self.obj(v) {
            Some(Obj::Tuple(l) | Obj::List(l)) if l.len() > MAX_DIMS => Err(self.err(
                at,
                format!("{what} has {} dimensions (at most {MAX_DIMS})", l.len()),
            )),
            Some(Obj::Tuple(l) | Obj::List(l)) => {
                l.iter().map(|x| self.usize_of(x, what, at)).collect()
            }
            _ => Err(self.err(at, format!("{what} is a {}, not a tuple", self.kind(v)))),
        }
    }

    /// `_rebuild_tensor_v2(storage, storage_offset, size, stride, requires_grad, backward_hooks
    /// [, metadata])` or the older `_rebuild_tensor(storage, storage_offset, size, stride)`.
    pub(super) fn rebuild_tensor(
        &mut self,
        name: &str,
        args: &[Value],
        at: usize,
    ) -> Result<Value> {
        if args.len() < 4 {
            return Err(self.err(
                at,
                format!("{name} needs at least 4 arguments, got {}", args.len()),
            ));
        }
        let storage = match self.obj(&args[0]) {
            Some(Obj::Storage(s)) => s.clone(),
            _ => {
                let kind = self.kind(&args[0]);
                return Err(self.err(
                    at,
                    format!("{name}: first argument is a {kind}, not a storage"),
                ));
            }
        };
        let offset = self.usize_of(&args[1], "storage offset", at)?;
        let shape = self.usize_list(&args[2], "tensor size", at)?;
        let stride = self.usize_list(&args[3], "tensor stride", at)?;
        if shape.len() != stride.len() {
            return Err(self.err(
                at,
                format!("tensor size {shape:?} and stride {stride:?} differ in length"),
            ));
        }
        Ok(self.alloc(Obj::Tensor(TensorRef {
            storage,
            offset,
            shape,
            stride,
        })))
    }

    /// BINPERSID: a storage, `('storage', storage_type, key, location, numel[, view_metadata])`.
    pub(super) fn persistent_load(&mut self, pid: &Value, at: usize) -> Result<Value> {
        let items = match self.obj(pid) {
            Some(Obj::Tuple(t)) => t.clone(),
            _ => {
                let kind = self.kind(pid);
                return Err(self.err(at, format!("persistent id is a {kind}, not a tuple")));
            }
        };
        match items.first().and_then(as_str) {
            Some("storage") => {}
            Some("module") => {
                return Err(self.err(
                    at,
                    "the file pickles a whole nn.Module (torch.save(model)); only state dicts are \
                     read: save model.state_dict() instead",
                ))
            }
            other => {
                return Err(self.err(at, format!("unknown persistent id kind {other:?}")));
            }
        }
        if items.len() < 5 {
            return Err(self.err(
                at,
                format!(
                    "storage persistent id has {} fields, expected 5 or 6",
                    items.len()
                ),
            ));
        }
        let Some((module, name)) = self.global(&items[1]) else {
            let kind = self.kind(&items[1]);
            return Err(self.err(at, format!("storage type is a {kind}, not a class")));
        };
        let dtype = Dtype::from_storage(&module, &name).ok_or_else(|| {
            self.err(
                at,
                format!(
                    "unsupported storage type {module}.{name} (supported: torch.Float, Double, \
                     Half, BFloat16, Long, Int, Short, Char, Byte and Bool storages)"
                ),
            )
        })?;
        let key = match &items[2] {
            Value::Int(i) => i.to_string(),
            v => as_str(v)
                .map(str::to_string)
                .ok_or_else(|| self.err(at, format!("storage key is a {}", self.kind(v))))?,
        };
        let view = match items.get(5) {
            None | Some(Value::None) => None,
            Some(v) => match self.obj(v) {
                Some(Obj::Tuple(t)) if t.len() == 3 => Some((
                    self.usize_of(&t[1], "storage view offset", at)?,
                    self.usize_of(&t[2], "storage view size", at)?,
                )),
                _ => {
                    let kind = self.kind(v);
                    return Err(self.err(at, format!("storage view metadata is a {kind}")));
                }
            },
        };
        self.storages.entry(key.clone()).or_insert(dtype);
        Ok(self.alloc(Obj::Storage(StorageRef { key, dtype, view })))
    }

    /// The named tensors of the unpickled object `top` (see [`read_pth`]).
    pub(super) fn state_dict(&self, top: &Value) -> Result<Vec<(String, TensorRef)>> {
        let bad = |m: String| Error::format(self.origin, m);
        let Some(Obj::Dict(dict)) = self.obj(top) else {
            return Err(bad(format!(
                "the file holds a {}, not a dict of tensors (a state dict)",
                self.kind(top)
            )));
        };
        let is_tensor = |v: &Value| matches!(self.obj(v), Some(Obj::Tensor(_)));
        let mut chosen = dict;
        if !dict.iter().any(|(_, v)| is_tensor(v)) {
            'find: for want in ["state_dict", "model"] {
                for (k, v) in dict.iter().rev() {
                    if let (Some(k), Some(Obj::Dict(inner))) = (as_str(k), self.obj(v)) {
                        if k == want {
                            chosen = inner;
                            break 'find;
                        }
                    }
                }
            }
        }
        let mut out = Vec::new();
        for (k, v) in chosen {
            let key = match k {
                Value::Int(i) => i.to_string(),
                k => match as_str(k) {
                    Some(s) => s.to_string(),
                    None => continue,
                },
            };
            match self.obj(v) {
                Some(Obj::Tensor(t)) => out.push((key, t.clone())),
                Some(Obj::Opaque(g)) => {
                    return Err(bad(format!(
                        "entry '{key}' is built by the global {g}, which this reader does not \
                         know (it reads tensors saved by torch.save: _rebuild_tensor_v2 over \
                         typed storages)"
                    )))
                }
                _ => {} // not a tensor (`_metadata`, an epoch count, ...): skipped
            }
        }
        if out.is_empty() && !chosen.is_empty() {
            let keys: Vec<&str> = dict.iter().filter_map(|(k, _)| as_str(k)).take(8).collect();
            return Err(bad(format!(
                "no tensors found, neither at the top level nor under 'state_dict' or 'model' \
                 (top-level keys: {keys:?})"
            )));
        }
        Ok(out)
    }
}
