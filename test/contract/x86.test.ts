import { X86Engine } from "../../src/runtime/x86/index.js";
import { runEngineContract } from "./engine.contract.js";

import { x86Fixture, x86Manifest, x86Image } from "../helpers/x86.js";

runEngineContract("x86", async () => {
  const program = x86Fixture("contract");
  const image = x86Image({ "bin/app": program, "zerocell.toml": Buffer.from('runtime = "x86"\n') });
  const invalidImage = x86Image({ "bin/app": Buffer.from("#!/bin/sh\necho not an ELF\n") });
  return {
    engine: new X86Engine({ log: () => {} }),
    manifest: x86Manifest("bin/app"),
    image,
    invalid: { manifest: x86Manifest("bin/app"), image: invalidImage },
    daemonExhausts: false,
  };
});
