import { Global, Module, type DynamicModule } from '@nestjs/common';
import { ImsConfig } from './ims-config.js';

/** Provides the validated ImsConfig (injected by type) to every module. */
@Global()
@Module({})
export class ConfigModule {
  static forConfig(config: ImsConfig): DynamicModule {
    return {
      module: ConfigModule,
      providers: [{ provide: ImsConfig, useValue: config }],
      exports: [ImsConfig],
    };
  }
}
