from handlers.higgs_audio.handler import main

main()
