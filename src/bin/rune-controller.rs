#[tokio::main]
async fn main() {
    std::process::exit(rune::controller::main().await);
}
