// The agent's --docker-* flags: where the plugin listens, its scope, the engine socket; bad values are refused
// with a message naming the flag.
import test from 'ava';
import { agentOptionsFrom } from '../../app/agent-options.js';
import { dockerPluginConfigOf } from '../driver/daemon.js';

test('docker plugin flags', (t) => {
  t.is(dockerPluginConfigOf({}, '/run/bees'), undefined);
  t.deepEqual(dockerPluginConfigOf({ plugin: '' }, '/run/bees'), {});
  t.deepEqual(dockerPluginConfigOf({ plugin: 'unix:docker-plugin.sock', scope: 'global', host: 'unix://d.sock' }, '/r'), {
    socket: '/r/docker-plugin.sock', scope: 'global', dockerSocket: '/r/d.sock',
  });
  t.deepEqual(dockerPluginConfigOf({ plugin: 'unix:/run/docker/plugins/x.sock', host: 'unix:///var/run/docker.sock' }, '/r'), {
    socket: '/run/docker/plugins/x.sock', dockerSocket: '/var/run/docker.sock',
  });
  t.throws(() => dockerPluginConfigOf({ plugin: 'tcp://1.2.3.4:80' }, '/r'), { message: /--docker-plugin takes unix:PATH/ });
  t.throws(() => dockerPluginConfigOf({ plugin: 'unix:' }, '/r'), { message: /--docker-plugin/ });
  t.throws(() => dockerPluginConfigOf({ plugin: '', scope: 'swarm' }, '/r'), { message: /--docker-scope must be local or global/ });
  t.throws(() => dockerPluginConfigOf({ plugin: '', host: '/var/run/docker.sock' }, '/r'), { message: /--docker-host takes unix:\/\/PATH/ });
  t.throws(() => dockerPluginConfigOf({ scope: 'local' }, '/r'), { message: /need --docker-plugin/ });
});

test('bees agent takes --docker-plugin with or without a value', (t) => {
  t.is(agentOptionsFrom(['--store', 'file:/tmp/x']).extraServices, undefined);
  t.is(agentOptionsFrom(['--docker-plugin']).extraServices?.length, 1);
  t.is(agentOptionsFrom(['--docker-plugin', '--docker-scope', 'global']).extraServices?.length, 1);
  t.is(agentOptionsFrom(['--docker-plugin', 'unix:p.sock', '--run-dir', '/tmp/r']).extraServices?.length, 1);
  t.throws(() => agentOptionsFrom(['--docker-scope', 'global']), { message: /need --docker-plugin/ });
});
