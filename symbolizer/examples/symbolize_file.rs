//! Names addresses of one ELF file, as the agent would: `symbolize_file PATH SVMA...` (hex).
//! For measuring what symbolization holds (`heaptrack`, `/usr/bin/time -v`).

fn main() {
    let mut args = std::env::args().skip(1);
    let Some(path) = args.next() else {
        eprintln!("usage: symbolize_file PATH SVMA...");
        std::process::exit(2);
    };
    let symbolizer = rprof_symbolizer::Symbolizer::new();
    let object = match symbolizer.load_file(&path) {
        Ok(object) => object,
        Err(err) => {
            eprintln!("{err}");
            std::process::exit(1);
        }
    };
    for arg in args {
        let Ok(svma) = u64::from_str_radix(arg.trim_start_matches("0x"), 16) else {
            eprintln!("not a hex address: {arg}");
            std::process::exit(2);
        };
        for frame in object.symbolize(svma) {
            let function = frame.function.as_deref().unwrap_or("??");
            let file = frame.file.as_deref().unwrap_or("??");
            println!("{svma:#x} {function} {file}:{}", frame.line.unwrap_or(0));
        }
    }
}
