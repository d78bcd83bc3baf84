// swift-tools-version:6.0
import PackageDescription

// Imports point one way only:
//   EngineIO → SocketIO (+ SidecastJSON) → Adapter (+ Redis) → Bridge → SidecastServer → sidecast
// Each C library is wrapped by exactly one Swift module: jansson and msgpack-c by SidecastJSON,
// hiredis by Redis.
let package = Package(
    name: "sidecast",
    platforms: [.macOS(.v14)],
    products: [
        .executable(name: "sidecast", targets: ["sidecast"]),
        .executable(name: "sidecast-bench", targets: ["sidecast-bench"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-nio.git", from: "2.101.2"),
        .package(url: "https://github.com/apple/swift-log.git", from: "1.16.2"),
        .package(url: "https://github.com/apple/swift-argument-parser.git", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-collections.git", from: "1.6.0"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle.git", from: "2.13.0"),
        .package(url: "https://github.com/apple/swift-metrics.git", from: "2.13.0"),
        .package(url: "https://github.com/swift-server/swift-prometheus.git", from: "2.4.1"),
        .package(url: "https://github.com/LebJe/TOMLKit.git", from: "0.6.0"),
        .package(url: "https://github.com/swift-extras/swift-extras-base64.git", from: "1.2.0"),
        .package(url: "https://github.com/apple/swift-nio-ssl.git", from: "2.37.6"),
        .package(url: "https://github.com/adam-fowler/compress-nio.git", from: "1.5.0"),
    ],
    targets: [
        .systemLibrary(name: "CJansson", pkgConfig: "jansson", providers: [.apt(["libjansson-dev"])]),
        .systemLibrary(name: "CHiredis", providers: [.apt(["libhiredis-dev"])]),
        .systemLibrary(name: "CMsgpack", pkgConfig: "msgpack", providers: [.apt(["libmsgpack-dev"])]),
        .systemLibrary(name: "CPrefetch"),

        .target(
            name: "SidecastJSON",
            dependencies: [
                .product(name: "ExtrasBase64", package: "swift-extras-base64"),
                "CJansson",
                "CMsgpack",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "OrderedCollections", package: "swift-collections"),
            ]
        ),
        .target(
            name: "EngineIO",
            dependencies: [
                "CPrefetch",
                .product(name: "CompressNIO", package: "compress-nio"),
                .product(name: "DequeModule", package: "swift-collections"),
                .product(name: "ExtrasBase64", package: "swift-extras-base64"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOWebSocket", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Metrics", package: "swift-metrics"),
            ]
        ),
        .target(
            name: "SocketIO",
            dependencies: [
                "CPrefetch",
                "EngineIO",
                "SidecastJSON",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "OrderedCollections", package: "swift-collections"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Metrics", package: "swift-metrics"),
            ]
        ),
        // A Redis client that knows nothing of Socket.IO: NIO drives the sockets, hiredis reads RESP.
        .target(
            name: "Redis",
            dependencies: [
                "CHiredis",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "DequeModule", package: "swift-collections"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Metrics", package: "swift-metrics"),
            ]
        ),
        .target(
            name: "Adapter",
            dependencies: [
                .product(name: "ExtrasBase64", package: "swift-extras-base64"),
                "EngineIO",
                "SocketIO",
                "SidecastJSON",
                "Redis",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "OrderedCollections", package: "swift-collections"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Metrics", package: "swift-metrics"),
            ]
        ),
        .target(
            name: "Bridge",
            dependencies: [
                "EngineIO",
                "SocketIO",
                "Adapter",
                "SidecastJSON",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "DequeModule", package: "swift-collections"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Metrics", package: "swift-metrics"),
            ]
        ),
        .target(
            name: "SidecastServer",
            dependencies: [
                "EngineIO",
                "SocketIO",
                "Adapter",
                "Bridge",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "Prometheus", package: "swift-prometheus"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
            ]
        ),
        .executableTarget(
            name: "sidecast",
            dependencies: [
                "SidecastServer",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "TOMLKit", package: "TOMLKit"),
            ]
        ),
        // The benchmark speaks the public wire protocols itself and imports no Sidecast module.
        .executableTarget(
            name: "sidecast-bench",
            dependencies: [
                .product(name: "CompressNIO", package: "compress-nio"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOWebSocket", package: "swift-nio"),
            ]
        ),

        // Drives an EngineIOServer over EmbeddedChannel with raw HTTP and WebSocket bytes; shared by
        // the Engine.IO and Socket.IO tests.
        .target(
            name: "EngineIOTestSupport",
            dependencies: [
                "EngineIO",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOEmbedded", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
            ],
            path: "Tests/EngineIOTestSupport"
        ),

        .testTarget(name: "SidecastJSONTests", dependencies: ["SidecastJSON"]),
        .testTarget(
            name: "EngineIOTests",
            dependencies: [
                .product(name: "CompressNIO", package: "compress-nio"),
                "EngineIO",
                "EngineIOTestSupport",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOEmbedded", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOWebSocket", package: "swift-nio"),
            ]
        ),
        .testTarget(
            name: "SocketIOTests",
            dependencies: [
                "SocketIO",
                "EngineIO",
                "EngineIOTestSupport",
                "SidecastJSON",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOEmbedded", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        .testTarget(
            name: "RedisTests",
            dependencies: [
                "Redis",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOEmbedded", package: "swift-nio"),
            ]
        ),
        .testTarget(
            name: "AdapterTests",
            dependencies: [
                "Adapter",
                "SocketIO",
                "EngineIO",
                "EngineIOTestSupport",
                "SidecastJSON",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOEmbedded", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        .testTarget(
            name: "BridgeTests",
            dependencies: [
                "Bridge",
                "SocketIO",
                "SidecastJSON",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOEmbedded", package: "swift-nio"),
            ]
        ),
        .testTarget(name: "SidecastServerTests", dependencies: ["SidecastServer"]),
        // Runs the real `sidecast` binary against python-socketio clients and backend processes
        // (Tests/IntegrationTests/python), with the tools scripts/test.sh installs.
        .testTarget(name: "IntegrationTests", dependencies: [], exclude: ["python"]),
    ]
)

// libFuzzer targets (Fuzz/), one per parser that a peer's bytes go through. They exist only when
// scripts/fuzz.sh builds them (SIDECAST_FUZZ=1, `-sanitize=fuzzer,address`, in .build-fuzz):
// they call into libFuzzer's runtime, which only `-sanitize=fuzzer` links, so a normal build or
// `swift test` must not see them.
if Context.environment["SIDECAST_FUZZ"] != nil {
    let fuzzTargets: [(name: String, dependencies: [Target.Dependency])] = [
        ("FuzzEngineIO", ["EngineIO"]),
        ("FuzzSocketIO", ["SocketIO"]),
        ("FuzzBridge", ["Bridge", "SidecastJSON"]),
        ("FuzzAdapter", ["Adapter", "SidecastJSON"]),
        ("FuzzRedis", ["Redis"]),
    ]
    package.targets.append(.systemLibrary(name: "CLibFuzzer", path: "Fuzz/CLibFuzzer"))
    package.targets += fuzzTargets.map { target in
        .executableTarget(
            name: target.name,
            dependencies: target.dependencies + ["CLibFuzzer", .product(name: "NIOCore", package: "swift-nio")],
            path: "Fuzz/Targets/\(target.name)"
        )
    }
}
