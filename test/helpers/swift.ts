/** A real OpenStack Swift for tests, started by the tests themselves (scripts/swift-local.mjs, shared with bench/). */
export { startSwift, swiftMissing, type SwiftServer } from "../../scripts/swift-local.mjs";
