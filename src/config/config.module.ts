import { Global, Module, type DynamicModule } from '@nestjs/common';
import { InputBounds } from '../rpc/input-bounds.js';
import { ImsConfig } from './ims-config.js';
import { loadTlsMaterial, TlsConfig } from './tls-options.js';

/**
 * Provides the validated ImsConfig (injected by type) to every module, with what follows from it for
 * every listener: the TLS files (read here, so a bad one stops start-up before storage is touched) and
 * the input bounds shared by the RPC and sync ports.
 */
@Global()
@Module({})
export class ConfigModule {
  static forConfig(config: ImsConfig): DynamicModule {
    const tls = new TlsConfig(loadTlsMaterial(config));
    return {
      module: ConfigModule,
      providers: [
        { provide: ImsConfig, useValue: config },
        { provide: TlsConfig, useValue: tls },
        InputBounds,
      ],
      exports: [ImsConfig, TlsConfig, InputBounds],
    };
  }
}
