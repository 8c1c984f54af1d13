// The harness is the testbed library (testbed/), shared with `bees demo`; the e2e suites import it from here.
export * from '../../testbed/index.js';
