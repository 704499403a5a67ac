#[tokio::main]
async fn main() {
    std::process::exit(rune::agent::main().await);
}
