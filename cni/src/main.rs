fn main() {
    std::process::exit(jobnet_cni::run());
}
