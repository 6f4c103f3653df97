fn main() {
    let path = std::env::args().nth(1).unwrap();
    let loaded = cutover_lang::load_file(std::path::Path::new(&path));
    println!("{}", serde_json::to_string(&cutover_lang::render_json(&loaded.sources, &loaded.diagnostics)).unwrap());
    print!("{}", cutover_lang::render_human(&loaded.sources, &loaded.diagnostics, false));
}
