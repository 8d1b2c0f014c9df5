// Runs `kestrel <args>` in this process: the entry `kestrel launch` starts each rank with (the same
// code bin/kestrel.js runs, reached from src/ under tsx as well as from the compiled dist/).
import { run } from './main.js';

process.exitCode = await run(process.argv.slice(2));
