// A device's configuration from OUTPOST_* variables: credentials come from the URL unless a
// variable sets them, and a variable set to nothing (`FOO= cmd` in a shell) counts as not set.
import { describe, expect, it } from 'vitest'
import { readDeviceConfig } from '../../devices/device-config.js'

describe('readDeviceConfig', () => {
  const url = 'mqtt://thermo-1:s3cr%2Ft@127.0.0.1:1884'

  it('takes the user name and password from the URL', () => {
    const c = readDeviceConfig('thermo-1', { OUTPOST_MQTT_URL: url })
    expect(c).toMatchObject({ username: 'thermo-1', password: 's3cr/t', mqttUrl: url, logLevel: 'info' })
  })

  it('an empty OUTPOST_MQTT_USERNAME, OUTPOST_MQTT_PASSWORD or OUTPOST_LOG_LEVEL counts as not set', () => {
    const c = readDeviceConfig('thermo-1', { OUTPOST_MQTT_URL: url, OUTPOST_MQTT_USERNAME: '', OUTPOST_MQTT_PASSWORD: '', OUTPOST_LOG_LEVEL: '', OUTPOST_LOG_FORMAT: '' })
    expect(c).toMatchObject({ username: 'thermo-1', password: 's3cr/t', logLevel: 'info' })
    expect(c.logFormat).toBeUndefined()
  })

  it('a variable that is set wins over the URL', () => {
    const c = readDeviceConfig('thermo-1', { OUTPOST_MQTT_URL: url, OUTPOST_MQTT_USERNAME: 'other', OUTPOST_MQTT_PASSWORD: 'pw' })
    expect(c).toMatchObject({ username: 'other', password: 'pw' })
  })
})
