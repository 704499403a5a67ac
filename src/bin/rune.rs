#[tokio::main]
async fn main() {
    std::process::exit(rune::cli::main().await);
}
