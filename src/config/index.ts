export { ConfigModule } from './config.module.js';
export { ConfigError, loadConfigFile, parseConfigText, CONFIG_KEYS } from './config-file.js';
export { ImsConfig, parseHostPort, type Durability } from './ims-config.js';
